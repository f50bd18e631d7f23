//! Ctrl-C for every training command: SIGINT or SIGTERM raises a flag the training loop reads
//! between steps, so the step in progress finishes and the run saves before it exits (with
//! 128 + the signal's number, as a shell reports a process the signal ended). A second signal
//! while that happens ends the process at once. And the command line that continues the run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The stop flag of a run and which signal raised it.
pub struct StopSignal {
    /// Raised by SIGINT or SIGTERM; the training loop stops before its next step.
    pub stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl StopSignal {
    /// Installs the handlers for SIGINT and SIGTERM.
    pub fn install() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Order matters: the conditional shutdown checks the flag before `register` sets
            // it, so only a second signal exits at once.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))?;
            signal_hook::flag::register(sig, Arc::clone(&stop))?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
        }
        Ok(StopSignal { stop, signal })
    }

    /// Whether a signal has arrived.
    pub fn raised(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// After training: from now on the first signal ends the process at once (with 128 + its
    /// number), as if no handler had been installed — nothing after training reads the flag.
    pub fn disarm(&self) -> anyhow::Result<()> {
        let always = Arc::new(AtomicBool::new(true));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&always))?;
        }
        Ok(())
    }

    /// The exit code of a run the signal stopped: 128 + its number (130 for SIGINT, 143 for
    /// SIGTERM).
    pub fn exit_code(&self) -> ExitCode {
        let sig = self.signal.load(Ordering::SeqCst);
        ExitCode::from((128 + sig).min(255) as u8)
    }
}

/// This command line with `--resume CHECKPOINT` in place of any earlier `--resume`.
pub fn resume_command(checkpoint: &Path) -> String {
    let mut out = vec!["scratchgpt".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--resume" {
            args.next();
        } else if !a.starts_with("--resume=") {
            out.push(if a.contains(' ') { format!("'{a}'") } else { a });
        }
    }
    out.push("--resume".into());
    out.push(checkpoint.display().to_string());
    out.join(" ")
}
