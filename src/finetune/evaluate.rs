//! Scoring instruction responses (book §7.8). The book asks a larger model (Llama 3 via Ollama)
//! to score each response from 0 to 100; that needs a server, so here it is optional
//! ([`judge_score`] asks a [`ModelServer`]: Ollama or OpenAI-compatible, http or https), and two
//! offline metrics always run:
//!
//! - **exact match**: the normalised response equals the normalised reference;
//! - **token F1** (as SQuAD scores answers): with P = shared words / response words and
//!   R = shared words / reference words (words counted with multiplicity), F1 = 2PR / (P + R).
//!
//! Both normalise by lower-casing, turning punctuation into spaces and collapsing whitespace, so
//! "The capital is Paris." and "the capital is paris" match.

use std::collections::HashMap;

use super::instruction_data::{format_input, InstructionEntry};
use super::model_server::ModelServer;
use crate::error::{Error, Result};

/// Lower-case words with punctuation removed.
pub fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Whether the normalised texts are equal.
pub fn exact_match(response: &str, reference: &str) -> bool {
    normalize(response) == normalize(reference)
}

/// Token-level F1 between a response and the reference (1 when both are empty).
pub fn token_f1(response: &str, reference: &str) -> f64 {
    let (r, g) = (normalize(response), normalize(reference));
    if r.is_empty() || g.is_empty() {
        return if r.is_empty() && g.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &g {
        *counts.entry(w).or_default() += 1;
    }
    let mut shared = 0usize;
    for w in &r {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                shared += 1;
            }
        }
    }
    if shared == 0 {
        return 0.0;
    }
    let (p, rc) = (
        shared as f64 / r.len() as f64,
        shared as f64 / g.len() as f64,
    );
    2.0 * p * rc / (p + rc)
}

/// Mean exact match and token F1 over (response, reference) pairs.
pub fn offline_scores(pairs: &[(String, String)]) -> Result<(f64, f64)> {
    if pairs.is_empty() {
        return Err(Error::invalid("offline_scores", "no responses to score"));
    }
    let n = pairs.len() as f64;
    let em = pairs.iter().filter(|(r, g)| exact_match(r, g)).count() as f64 / n;
    let f1 = pairs.iter().map(|(r, g)| token_f1(r, g)).sum::<f64>() / n;
    Ok((em, f1))
}

/// The book's judging prompt (§7.8) for one entry and the model's response.
pub fn judge_prompt(entry: &InstructionEntry, response: &str) -> String {
    format!(
        "Given the input `{}` and correct output `{}`, score the model response `{response}` on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only.",
        format_input(entry),
        entry.output
    )
}

/// Asks `server` to score a response (the book's prompt, seed 123, temperature 0); returns the
/// integer it answers (the first number in the answer, as the book's parsing accepts).
pub fn judge_score(server: &ModelServer, entry: &InstructionEntry, response: &str) -> Result<u32> {
    let content = server.chat(&judge_prompt(entry, response))?;
    content
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Network {
            url: server.endpoint(),
            msg: format!("the judge answered {content:?}, not an integer"),
        })
}
