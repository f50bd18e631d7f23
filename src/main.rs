//! The `scratchgpt` command line. Library errors become one clear line and a non-zero exit.

mod cli;

fn main() -> std::process::ExitCode {
    scratchgpt::backend::cpu::keep_freed_memory_for_reuse();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
