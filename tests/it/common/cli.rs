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
    let out = command(args, envs, false)
        .output()
        .await
        .expect("running the regmirror binary");
    finish(args, start, out)
}

/// Runs the binary to completion (see [`regmirror_env`]).
pub async fn regmirror(args: &[&str]) -> Run {
    regmirror_env(args, &[]).await
}

/// Environment variables naming credential files; tests clear them so the
/// developer's own `docker login` never leaks into a run.
pub const CREDENTIAL_ENV: [&str; 4] = [
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "HOME",
];

/// The binary with `args`, RUST_LOG cleared, `envs` set; with `isolate`,
/// the [`CREDENTIAL_ENV`] variables cleared first.
fn command(args: &[&str], envs: &[(&str, &str)], isolate: bool) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    // Runs remember nothing across runs unless a test asks for a store:
    // tests running at once never share the per-user one.
    cmd.args(args)
        .env("REGMIRROR_NO_STATE", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if isolate {
        for k in CREDENTIAL_ENV {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn finish(args: &[&str], start: Instant, out: std::process::Output) -> Run {
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

/// Runs the binary with no credential-file variables and no HOME (so no
/// `~/.docker/config.json` is read) except those in `envs`.
pub async fn regmirror_isolated(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let out = command(args, envs, true)
        .output()
        .await
        .expect("running the regmirror binary");
    finish(args, start, out)
}

/// Runs the binary with its stdout already closed by the reader (as after
/// `| head -0`), so every write to stdout meets a broken pipe.
pub async fn regmirror_closed_stdout(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let mut cmd = command(args, envs, true);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning the regmirror binary");
    drop(child.stdout.take());
    let out = child
        .wait_with_output()
        .await
        .expect("waiting for the regmirror binary");
    finish(args, start, out)
}

/// Starts the binary, waits until `ready` says so (polled every 50 ms, at
/// most `within`), sends it `signal` (`libc::SIGINT`, `libc::SIGTERM`), and
/// returns how it ended.
pub async fn regmirror_signalled(
    args: &[&str],
    envs: &[(&str, &str)],
    signal: i32,
    within: Duration,
    ready: impl Fn() -> bool,
) -> Run {
    let start = Instant::now();
    let mut cmd = command(args, envs, true);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawning the regmirror binary");
    let pid = child.id().expect("the child's pid") as i32;
    while !ready() {
        assert!(
            start.elapsed() < within,
            "regmirror {args:?} never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) on the pid of a child this function spawned and has not reaped.
    unsafe {
        libc::kill(pid, signal);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("regmirror did not exit within 60 s of the signal")
        .expect("waiting for the regmirror binary");
    finish(args, start, out)
}
