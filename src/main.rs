//! The `sentinel` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any other thread exists; a setting glibc refuses leaves its default in place.
    sentinel::support::memory::keep_freed_memory();
    let cli = sentinel::cli::Cli::parse();
    match sentinel::cmd::execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if sentinel::cmd::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
