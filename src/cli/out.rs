//! Everything the command line writes: results on stdout, diagnostics on
//! stderr.
//!
//! - stdout: [`outln!`] and [`write_bytes`]. When the reader goes away
//!   (`regmirror check --next 1000 | head -1`), the first broken-pipe error
//!   marks stdout closed for the rest of the process; later writes are
//!   dropped and the command ends with the exit code it would have had
//!   anyway. Any other write error is returned.
//! - stderr: [`error`], [`warn`] and [`note`]. With `--log-format json`
//!   they are tracing events (one JSON object per line, like every log line);
//!   with text, plain lines. They never panic, even when stderr is closed.

use std::fmt;
use std::io::{self, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::LogFormat;

/// Set once stdout's reader has gone away.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The log format chosen on the command line; text until set.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Record the log format for [`error`], [`warn`] and [`note`].
pub fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// True when diagnostics are JSON log lines.
pub fn json_logs() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// True once a write to stdout hit a broken pipe.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn absorb_broken_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// Write formatted text to stdout (see the module docs for broken pipes).
pub fn write_fmt(args: fmt::Arguments<'_>) -> io::Result<()> {
    if stdout_closed() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    absorb_broken_pipe(out.write_fmt(args).and_then(|()| out.flush()))
}

/// Write raw bytes to stdout (see the module docs for broken pipes).
pub fn write_bytes(bytes: &[u8]) -> io::Result<()> {
    if stdout_closed() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    absorb_broken_pipe(out.write_all(bytes).and_then(|()| out.flush()))
}

/// `println!` for results: returns `io::Result<()>`, quiet on a broken pipe.
macro_rules! outln {
    () => {
        $crate::cli::out::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

fn stderr_line(prefix: &str, message: &str) {
    super::progress::suspend(|| {
        let mut err = io::stderr().lock();
        let _ = if prefix.is_empty() {
            writeln!(err, "{message}")
        } else {
            writeln!(err, "{prefix}: {message}")
        };
    });
}

/// Report an error on stderr.
pub fn error(message: &str) {
    if json_logs() {
        tracing::error!(target: "regmirror", "{message}");
    } else {
        // The message may quote a registry's words: escape control characters.
        stderr_line("error", &regmirror::registry::escape::printable(message));
    }
}

/// Report a warning on stderr.
pub fn warn(message: &str) {
    if json_logs() {
        tracing::warn!(target: "regmirror", "{message}");
    } else {
        stderr_line("warning", message);
    }
}

/// Tell the user something on stderr (hints, failure lists).
pub fn note(message: &str) {
    if json_logs() {
        tracing::info!(target: "regmirror", "{message}");
    } else {
        stderr_line("", message);
    }
}

/// An error and its causes on one line, each cause shown once: a cause
/// whose text the message before it already contains is left out (error
/// types that embed their source in their own message would otherwise
/// repeat it).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut shown = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || shown.contains(text) {
            continue;
        }
        if !shown.is_empty() {
            shown.push_str(": ");
        }
        shown.push_str(text);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("digest \"sha256:abc\" is malformed: too short")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("fetching manifest x: {0}")]
    struct Outer(#[source] Inner);

    #[test]
    fn causes_are_not_repeated() {
        let e = anyhow::Error::new(Outer(Inner)).context("cannot inspect x");
        assert_eq!(
            error_chain(&e),
            "cannot inspect x: fetching manifest x: digest \"sha256:abc\" is malformed: too short"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}
