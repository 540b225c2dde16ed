//! File operations that never follow a symbolic link on write. Every file
//! the layout store writes goes through here: new files are created
//! exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`) under a name no other process
//! can predict, lock files are opened with `O_NOFOLLOW` and checked to be
//! regular files, directories are made without following a link and
//! checked to be real directories, and a rename refuses a destination that
//! is a symbolic link or not a regular file. Reads of layout files open with
//! `O_NOFOLLOW|O_NONBLOCK` and check the type of what was opened, so a FIFO
//! or a device never blocks a run.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// A suffix no other process can guess: the pid and 64 random bits.
pub(crate) fn unique_suffix() -> String {
    format!("{}.{:016x}", std::process::id(), rand::random::<u64>())
}

fn refused(what: &str) -> io::Error {
    io::Error::other(format!("{what}: refusing to follow or replace it"))
}

/// An `ELOOP` from `O_NOFOLLOW` said plainly.
fn explain(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => refused("it is a symbolic link"),
        Some(libc::ENXIO) => refused("it is a FIFO or socket with no peer"),
        _ => e,
    }
}

/// Create a new file for writing; fails when anything (a file, a symlink,
/// dangling or not) is already at `path`.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(explain)
}

/// Open (creating when absent) a lock file without following a link; a
/// lock file that is not a regular file is refused.
pub(crate) fn open_lock(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(explain)?;
    if !f.metadata()?.is_file() {
        return Err(refused("it is not a regular file"));
    }
    Ok(f)
}

/// Open an existing regular file for reading without blocking on a FIFO
/// (and, unless `follow`, without following a link); anything but a
/// regular file is refused.
pub(crate) fn open_regular(path: &Path, follow: bool) -> io::Result<(File, std::fs::Metadata)> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(explain)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(
            "it is not a regular file (a FIFO, device or directory): refusing to read it",
        ));
    }
    Ok((f, meta))
}

/// Make sure `dir` is a real directory (owned by this user when `owned`),
/// creating it when absent (and its parents, as a long-lived writer whose
/// layout was removed must); a symlink or anything else there is refused.
pub(crate) fn ensure_dir(dir: &Path, owned: bool) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    if m.file_type().is_symlink() {
        return Err(refused("it is a symbolic link"));
    }
    if !m.is_dir() {
        return Err(refused("it is not a directory"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if owned && m.uid() != unsafe { libc::geteuid() } {
        return Err(refused("it is a directory owned by another user"));
    }
    Ok(())
}

/// Check that `dest` is absent or a regular file (never a symlink), so a
/// rename onto it replaces only what this process means to replace.
pub(crate) fn check_dest(dest: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_symlink() => Err(refused("it is a symbolic link")),
        Ok(m) if !m.is_file() => Err(refused("it is not a regular file")),
        Ok(_) => Ok(()),
    }
}

/// Rename `tmp` onto `dest` after [`check_dest`].
pub(crate) fn rename_onto(tmp: &Path, dest: &Path) -> io::Result<()> {
    check_dest(dest)?;
    std::fs::rename(tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_new(&link).is_err());
        let e = open_lock(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(open_lock(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"new").unwrap();
        assert!(rename_onto(&tmp, &link).is_err());
        assert!(ensure_dir(&link, false).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(open_regular(&link, false).is_err());
    }
}
