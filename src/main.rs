//! The `regmirror` command: parse arguments, start tracing, dispatch, and map
//! the outcome to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(&args.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::Exit::Failed as u8);
        }
    };
    let outcome = runtime.block_on(cli::dispatch(args));
    // Work abandoned at shutdown (a run past its grace period, a hung DNS
    // lookup) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            // The chain may quote a registry's words: escape control characters.
            let text = format!("{e:#}");
            eprintln!("error: {}", regmirror::registry::escape::printable(&text));
            ExitCode::from(cli::exit_for_error(&e) as u8)
        }
    }
}
