//! ttplan: a declarative pipeline engine for fault-injection experiments on microservice
//! benchmarks. `main` only calls [`run`]; everything else is a library so it can be tested.

pub mod atomic_write;
pub mod campaign;
pub mod chaos_admin;
pub mod child;
pub mod cli;
pub mod collect;
mod commands;
pub mod coverage;
pub mod dataset;
pub mod diag;
pub mod engine;
pub mod git;
pub mod kube;
#[cfg(test)]
mod layers;
pub mod plan;
pub mod probe;
pub mod report;
mod sandbox;
pub mod steps;
pub mod traffic;

use std::ffi::OsString;
use std::process::ExitCode;

/// Exit codes: what a script driving a campaign needs to tell apart.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    /// A step failed (the run finished, with failures).
    pub const STEP_FAILED: u8 = 1;
    /// Bad usage or an invalid plan: nothing ran.
    pub const INVALID: u8 = 2;
    /// Stopped by SIGINT/SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

/// Writes command output to stdout. A closed pipe (`ttplan schema | head`) is not an error,
/// and must not stop work in progress such as `chaos clean`, so write errors are ignored.
pub(crate) fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Parses arguments, runs the command, prints errors, returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match <cli::Args as clap::Parser>::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::SUCCESS
            });
        }
    };
    ExitCode::from(commands::dispatch(args))
}
