//! Exercises: write the backward of every op a GPT is made of, and check it.
//!
//! [`Rules`] has one method per op; [`YourRules`] (`yours.rs`) ships with every body blank for a
//! student to fill in, and [`LibraryRules`] answers each with the library's own rule.
//! [`ExerciseOps`] computes an op's forward with the library and its backward with a `Rules`, so
//! [`check_rules`] can swap anyone's rules into a gradient check and into the whole tiny GPT at
//! run time — `scratchgpt study exercises` runs in seconds, with no second build.

mod check;
mod library;
mod ops;
mod rules;
mod yours;

pub use check::{check_rules, render, CheckReport, ExerciseReport, Verdict, GPT_TOLERANCE};
pub use library::LibraryRules;
pub use ops::ExerciseOps;
pub use rules::{Exercise, Rules};
pub use yours::YourRules;

/// Where the blanks live, for messages.
pub const YOUR_RULES_FILE: &str = "src/study/exercises/yours.rs";
