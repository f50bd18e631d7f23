//! wip
pub struct Ids;
