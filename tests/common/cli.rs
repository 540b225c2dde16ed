//! Running the `regmirror` binary from tests.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// What a run of the binary printed and how it exited.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Runs the binary to completion with `envs` set and RUST_LOG cleared,
/// without blocking the test runtime. A panic of the binary fails the test.
pub async fn regmirror_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("running the regmirror binary");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "regmirror {args:?} panicked:\n{}",
        run.stderr
    );
    run
}

/// Runs the binary to completion (see [`regmirror_env`]).
pub async fn regmirror(args: &[&str]) -> Run {
    regmirror_env(args, &[]).await
}
