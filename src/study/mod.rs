//! Studying a whole GPT's backward (docs/backprop.md): the tools behind `scratchgpt study gpt`
//! and `scratchgpt study exercises`.
//!
//! One tiny GPT forward is written once, in [`tiny_gpt`], over an [`OpSet`]: the six ops a GPT
//! is made of (embedding, linear, layer norm, GELU, causal attention, cross-entropy). Three op
//! sets plug into it:
//!
//! - [`Fused`]: the library's fused ops, exactly as `GptModel` calls them (a test proves the two
//!   forwards and backwards bit-identical);
//! - [`Primitive`]: the same math from elementary ops only — layer norm from mean, sub, mul and
//!   sqrt; attention from matmuls, a mask and a softmax of exp/sum/div; the loss from a
//!   log-softmax of max/exp/log and a `gather` — so every gradient comes from the simplest rules;
//! - [`exercises::ExerciseOps`]: the library's forwards with *your* backward rules.
//!
//! [`compare()`] runs one backward through two of them and lines up the gradients at every boundary
//! the graphs share; [`graph`] draws a recorded graph in one Graphviz cluster per module.

pub mod compare;
pub mod exercises;
pub mod graph;
pub mod op_set;
pub mod tiny_gpt;

pub use compare::{compare, Comparison, Row, RowKind, Side};
pub use op_set::{Fused, OpSet, Primitive, FUSED_OPS};
pub use tiny_gpt::{study_config, study_model, Taps, TinyBatch};
