//! What every training loop (pretraining and each fine-tuning command) shares beyond its step:
//! periodic checkpoints, pruned to the newest `keep_last` only once proven sound, and a stop flag
//! raised from outside (Ctrl-C).
//!
//! **Why "proven".** The checkpoint written after step `s` holds the weights step `s + 1`
//! computes its loss with. If that loss is not finite, those weights diverged: the checkpoint is
//! removed rather than left as the newest, and the older ones (which `keep_last` would otherwise
//! have deleted already) are still there. So the newest checkpoint on disk is always one whose
//! weights gave a finite loss, or the final weights of a run that ended cleanly.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::checkpoint::RunInfo;
use super::PeriodicSave;
use crate::error::Result;

/// Whether the stop flag (if any) has been raised.
pub(crate) fn stop_requested(stop: &Option<Arc<AtomicBool>>) -> bool {
    stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
}

/// The periodic checkpoints of one run, and the newest one not yet proven sound.
pub(crate) struct PeriodicSaver<'a> {
    save: Option<&'a PeriodicSave>,
    unproven: Option<PathBuf>,
}

impl<'a> PeriodicSaver<'a> {
    pub(crate) fn new(save: Option<&'a PeriodicSave>) -> Self {
        PeriodicSaver {
            save,
            unproven: None,
        }
    }

    /// After `steps_done` optimizer steps: writes the periodic checkpoint through `write` (given
    /// its path and the run's metadata) if one is due, and returns its path.
    pub(crate) fn save_if_due(
        &mut self,
        steps_done: usize,
        write: impl FnOnce(&Path, &RunInfo) -> Result<()>,
    ) -> Result<Option<PathBuf>> {
        let Some(save) = self.save else {
            return Ok(None);
        };
        if !steps_done.is_multiple_of(save.every) {
            return Ok(None);
        }
        let path = save.path_at(steps_done);
        write(&path, &save.info)?;
        self.unproven = Some(path.clone());
        Ok(Some(path))
    }

    /// A step's loss was finite, or the run ended cleanly: the newest checkpoint is sound, so
    /// the ones beyond `keep_last` may go.
    pub(crate) fn proven(&mut self) {
        if let (Some(_), Some(save)) = (self.unproven.take(), self.save) {
            if let Some(keep) = save.keep_last {
                let all = save.existing();
                for old in &all[..all.len().saturating_sub(keep)] {
                    let _ = std::fs::remove_file(old);
                }
            }
        }
    }

    /// The run diverged: removes the newest checkpoint (its weights are the ones that gave the
    /// non-finite value) and returns a note for the error message ("" when there was none).
    pub(crate) fn discard_unproven(&mut self) -> String {
        self.unproven.take().map_or(String::new(), |p| {
            let _ = std::fs::remove_file(&p);
            format!(
                "; {} held the weights that diverged and was removed",
                p.display()
            )
        })
    }
}
