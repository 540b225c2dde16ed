//! The `regmirror` command: parse arguments, start tracing, dispatch, and map
//! the outcome to an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::parse() {
        Ok(a) => a,
        Err(e) => return cli::validate::clap_error(e),
    };
    cli::init_tracing(&args.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            cli::out::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(cli::Exit::Failed as u8);
        }
    };
    let exit = match runtime.block_on(cli::dispatch(args)) {
        Ok(exit) => exit,
        Err(e) => {
            cli::out::error(&cli::out::error_chain(&e));
            if let Some(hint) = cli::flag_hint(&e) {
                cli::out::note(hint);
            }
            cli::exit_for_error(&e)
        }
    };
    // Copies abandoned on a second signal must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(exit as u8)
}
