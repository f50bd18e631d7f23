//! Reverse-mode automatic differentiation: the graph ([`node`]), `backward()` ([`backward`]),
//! grad mode ([`no_grad`]), Graphviz export ([`dot`]) and numeric gradient checks
//! ([`gradcheck`]).

mod backward;
pub mod dot;
pub mod grad_mode;
pub mod gradcheck;
pub mod node;
pub mod profile;

pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use node::{live_graph_nodes, next_tensor_id, BackwardFn};
