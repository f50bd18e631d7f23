//! `metrics.jsonl` in a run folder: one JSON object per evaluation (and per epoch's accuracies,
//! and a closing `final` line), appended as the run goes. A resumed run keeps exactly the lines
//! of the position it continues from: resuming from an older periodic checkpoint would otherwise
//! repeat the lines of the steps it redoes, and a run that had ended would leave its `final`
//! line in the middle of the file. A fresh run starts the file anew.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use scratchgpt::train::TrainState;
use serde_json::Value;

/// Opens `path` for appending, first keeping only the lines `state` has already passed.
pub fn open_metrics(path: &Path, state: &TrainState) -> anyhow::Result<File> {
    let kept: Vec<String> = if state.global_step == 0 {
        Vec::new()
    } else {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|line| passed(line, state))
            .map(str::to_string)
            .collect()
    };
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    scratchgpt::data::text_file::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Whether a line records something the run had done by `state`: an evaluation after a step
/// already taken, or the accuracies of an epoch already finished.
fn passed(line: &str, state: &TrainState) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    if let Some(step) = v["step"].as_u64() {
        return (step as usize) < state.global_step;
    }
    match v["epoch"].as_u64() {
        Some(epoch) => v.get("final").is_none() && (epoch as usize) <= state.epoch,
        None => false,
    }
}
