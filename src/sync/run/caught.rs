//! A mirror run that panics (a bug) ends as a failed run of its own: its
//! report says so, so that `sync` exits non-zero and every `[[notify]]`
//! sink still hears of the run, while the other mirrors go on.
//!
//! Debug builds only (what the tests run): `REGMIRROR_TEST_PANIC_MIRROR=NAME`
//! makes the run of mirror `NAME` panic, as no real input can.

use std::any::Any;

/// The variable naming the mirror whose run panics (debug builds only).
#[cfg(debug_assertions)]
pub const TEST_PANIC_VAR: &str = "REGMIRROR_TEST_PANIC_MIRROR";

/// Panic when the test variable names `mirror` (debug builds only).
#[cfg(debug_assertions)]
pub(super) fn panic_if_asked(mirror: &str) {
    if std::env::var(TEST_PANIC_VAR).is_ok_and(|name| name == mirror) {
        panic!("{TEST_PANIC_VAR} names mirror {mirror}: a test panic");
    }
}

/// The words of a panic's payload.
pub fn panic_words(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// The error of `mirror`'s run that panicked with `payload`, logged: what
/// its report says.
pub(super) fn panicked(mirror: &str, payload: &(dyn Any + Send)) -> String {
    let words = crate::registry::escape::shown(&panic_words(payload));
    tracing::error!(mirror = %mirror, panic = %words,
        "the mirror run panicked; it counts as a failed run and the other mirrors go on");
    format!(
        "the mirror run stopped on an internal error (a bug in regmirror: please report it \
         with this message and the log; the next run starts afresh): {words}"
    )
}
