//! One writer per layout: an advisory lock (`flock`) on a lock file. The
//! kernel drops the lock when its holder exits, even on `kill -9`, so a
//! crashed run never blocks the next one. A second writer polls for a
//! bounded time, then fails and names the lock file. The lock file is
//! opened without following a symbolic link (see [`super::safe`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::registry::error::{Op, Result};

/// Name of the lock file inside a layout directory (beside an archive, the
/// archive's name + `.lock`).
pub const LOCK_FILE: &str = ".regmirror.lock";

/// How often a waiting writer tries again.
const POLL: Duration = Duration::from_millis(100);

/// A held lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Take the lock at `path`, waiting at most `wait`. `target` names the
/// layout in errors.
pub async fn acquire(path: &Path, wait: Duration, target: &str) -> Result<LockGuard> {
    let file =
        super::safe::open_lock(path).map_err(|e| super::io_error(Op::PutBlob, target, path, &e))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(LockGuard {
                    file,
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                tokio::time::sleep(POLL).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(super::error(
                    Op::PutBlob,
                    target,
                    format!(
                        "another process is writing this layout (it holds {}); waited {}s: \
                         run one writer per layout at a time, or raise the timeout (--timeout, or \
                         timeout_seconds in [defaults]) to wait longer",
                        path.display(),
                        wait.as_secs()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(super::io_error(Op::PutBlob, target, path, &e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_writer_waits_then_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let first = acquire(&path, Duration::from_secs(1), "oci:x")
            .await
            .unwrap();
        let started = Instant::now();
        let e = acquire(&path, Duration::from_millis(300), "oci:x")
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(e.contains("another process is writing"), "{e}");
        assert!(e.contains(LOCK_FILE), "{e}");
        drop(first);
        acquire(&path, Duration::from_millis(300), "oci:x")
            .await
            .unwrap();
    }
}
