//! Writing preference data with a model server, as the book's notebook
//! (`create-preference-data-ollama`) does: for each instruction entry, pick "polite" or
//! "impolite" at random, ask the server to rewrite the entry's output slightly to be more so,
//! and keep the rewrite as `chosen` (polite) or `rejected` (impolite), with the original output
//! as the other answer.

use super::instruction_data::{format_input, InstructionEntry};
use super::model_server::ModelServer;
use super::preference_data::PreferenceEntry;
use crate::error::{Error, Result};
use crate::tensor::rng::Rng;

/// The book's rewriting prompt (its wording, including "return return").
pub fn rewrite_prompt(entry: &InstructionEntry, polite: bool) -> String {
    let politeness = if polite { "polite" } else { "impolite" };
    format!(
        "Given the input `{}` and correct output `{}`, slightly rewrite the output to be more {politeness}.Keep the modification minimal.Only return return the generated response and nothing else.",
        format_input(entry),
        entry.output
    )
}

/// Whether entry `index` is rewritten to be polite: a fair coin from `(seed, index)`, so a resumed
/// run makes the same choices.
pub fn polite_choice(seed: u64, index: usize) -> bool {
    Rng::new(crate::tensor::rng::mix64(seed ^ index as u64)).next_u64() & 1 == 0
}

/// One preference entry from `entry`: the server's rewrite and the original output, ordered by
/// the choice. An empty rewrite is an error (it would make a pair with nothing to prefer).
pub fn make_preference_entry(
    server: &ModelServer,
    entry: &InstructionEntry,
    polite: bool,
) -> Result<PreferenceEntry> {
    let rewrite = server
        .chat(&rewrite_prompt(entry, polite))?
        .trim()
        .to_string();
    if rewrite.is_empty() {
        return Err(Error::Network {
            url: server.endpoint(),
            msg: format!(
                "the server returned an empty rewrite for the instruction {:?}",
                entry.instruction
            ),
        });
    }
    let (chosen, rejected) = if polite {
        (rewrite, entry.output.clone())
    } else {
        (entry.output.clone(), rewrite)
    };
    Ok(PreferenceEntry {
        entry: entry.clone(),
        chosen,
        rejected,
    })
}
