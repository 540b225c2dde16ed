//! Temporary space for extracted archives: a budget checked before
//! anything is extracted, and the leftovers of killed runs removed.
//!
//! An archive is extracted into `TMPDIR/regmirror-archive-<pid>-<random>`.
//! Before extracting, the sizes its entries declare are added up and
//! checked against the budget (`REGMIRROR_ARCHIVE_BUDGET` bytes, 64 GiB by
//! default) and against the space free in `TMPDIR` (`statvfs`), so a small
//! sparse archive declaring a huge member is refused instead of filling the
//! disk. A run killed with `kill -9` cannot remove its copy; the next run
//! that extracts an archive removes every such directory owned by this
//! user whose process is gone.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Prefix of extraction directories (followed by `<pid>-`).
pub const PREFIX: &str = "regmirror-archive-";
/// Environment variable overriding the extraction budget (bytes).
pub const BUDGET_ENV: &str = "REGMIRROR_ARCHIVE_BUDGET";
/// Default extraction budget.
pub const DEFAULT_BUDGET: u64 = 64 << 30;

/// The extraction budget in bytes.
pub fn budget() -> u64 {
    std::env::var(BUDGET_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_BUDGET)
}

/// Bytes free for this user in the file system of `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `s` a valid out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// Check that `declared` bytes may be extracted under `dir`.
pub fn check_room(dir: &Path, declared: u64) -> Result<(), String> {
    let budget = budget();
    if declared > budget {
        return Err(format!(
            "its entries declare {declared} bytes, over the extraction budget of {budget} bytes \
             (set {BUDGET_ENV} to raise it)"
        ));
    }
    if let Some(free) = free_space(dir)
        && declared.saturating_add(declared / 16) > free
    {
        return Err(format!(
            "its entries declare {declared} bytes and {} has {free} bytes free: set TMPDIR to \
             a directory with room",
            dir.display()
        ));
    }
    Ok(())
}

/// The name prefix of this process's extraction directories.
pub fn own_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// Remove extraction directories of runs that are gone: named
/// `regmirror-archive-<pid>-…`, real directories owned by this user, whose
/// process no longer exists.
pub fn remove_leftovers(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let path = e.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.is_dir() || m.uid() != me || pid <= 0 || pid as u32 == std::process::id() {
            continue;
        }
        // SAFETY: signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "removed the archive copy of a run that was killed")
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove the archive copy of a killed run")
                }
            }
        }
    }
}
