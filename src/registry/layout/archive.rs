//! `oci-archive:` files: a tar of a layout.
//!
//! Reading validates every entry's header before anything is written: only
//! `oci-layout`, `index.json` and `blobs/<alg>/<hex>` regular files (with a
//! digest that parses strictly) and the `blobs/` and `blobs/<alg>/`
//! directories; no links, devices, absolute paths, `..`, duplicates or
//! oversized entries. Then the files are extracted into a private temporary
//! directory (blobs verified against their digest) that serves as the
//! layout. Writing goes to that directory and is packed at the end of the
//! run: `oci-layout` first, the blobs, `index.json` last (a truncated
//! archive lacks it and is refused as incomplete), into a temporary file
//! beside the archive (created exclusively under an unpredictable name),
//! fsynced and renamed into place; an archive path that is a symbolic link
//! is refused, never written through. An archive path that is a FIFO or
//! device is refused when opened.
//!
//! The `tar` crate (blocking; used in `spawn_blocking`) is used only to
//! read headers and data and to build archives, never to unpack: every path
//! written is built here from a validated name.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::registry::digest::Digest;
use crate::registry::error::{Op, Result};

use super::files::{FileStamp, sync_dir};
use super::paths::blob_relative_path;
use super::{MAX_INDEX_BYTES, MAX_INDEX_ENTRIES, error, io_error, safe, scratch};

/// Largest `oci-layout` entry.
const MAX_OCI_LAYOUT_ENTRY: u64 = 4096;
/// Largest blob entry (1 TiB): a bound on what a hostile header can claim.
pub const MAX_BLOB_ENTRY: u64 = 1 << 40;
/// Most entries in an archive.
const MAX_ENTRIES: usize = 4 * MAX_INDEX_ENTRIES;

/// The lock file of an archive: beside it, its name + `.lock`.
pub fn lock_path(archive: &Path) -> PathBuf {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    archive.with_file_name(name)
}

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryName {
    /// `oci-layout`.
    OciLayout,
    /// `index.json`.
    Index,
    /// `blobs/` or `blobs/<alg>/`.
    Dir,
    /// `blobs/<alg>/<hex>`.
    Blob(Digest),
}

/// Classify an entry's path, or say why it is refused. A leading `./` is
/// accepted (tar's convention for relative members).
pub fn entry_name(path: &[u8], is_dir: bool) -> std::result::Result<EntryName, String> {
    let text = std::str::from_utf8(path).map_err(|_| "a path that is not UTF-8".to_string())?;
    let shown = crate::registry::escape::shown(text);
    let rel = text.strip_prefix("./").unwrap_or(text);
    let rel = if is_dir {
        rel.strip_suffix('/').unwrap_or(rel)
    } else {
        rel
    };
    if rel.starts_with('/') {
        return Err(format!("an absolute path {shown:?}"));
    }
    if rel
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(format!(
            "a path with '..', '.' or an empty component {shown:?}"
        ));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    match (parts.as_slice(), is_dir) {
        (["oci-layout"], false) => Ok(EntryName::OciLayout),
        (["index.json"], false) => Ok(EntryName::Index),
        (["blobs"], true) => Ok(EntryName::Dir),
        (["blobs", "sha256" | "sha512"], true) => Ok(EntryName::Dir),
        (["blobs", alg, hex], false) => format!("{alg}:{hex}")
            .parse::<Digest>()
            .map(EntryName::Blob)
            .map_err(|_| format!("a blob path that is not a valid digest {shown:?}")),
        _ => Err(format!(
            "an entry that is not part of an OCI layout {shown:?}"
        )),
    }
}

/// Check one header: type, name, size. Returns the entry's meaning.
fn check_header(
    header: &tar::Header,
    path: &[u8],
    seen: &mut HashSet<Vec<u8>>,
) -> std::result::Result<EntryName, String> {
    let kind = header.entry_type();
    let is_dir = kind.is_dir();
    if !(kind.is_file() || is_dir) {
        let what = match kind {
            tar::EntryType::Symlink => "a symbolic link",
            tar::EntryType::Link => "a hard link",
            tar::EntryType::Char | tar::EntryType::Block => "a device",
            tar::EntryType::Fifo => "a FIFO",
            _ => "an entry of an unsupported type",
        };
        return Err(format!(
            "{what} {:?}",
            crate::registry::escape::shown(&String::from_utf8_lossy(path))
        ));
    }
    let name = entry_name(path, is_dir)?;
    let normalised = {
        let p = path.strip_prefix(b"./").unwrap_or(path);
        p.strip_suffix(b"/").unwrap_or(p).to_vec()
    };
    if !seen.insert(normalised) {
        return Err(format!(
            "a duplicate entry {:?}",
            crate::registry::escape::shown(&String::from_utf8_lossy(path))
        ));
    }
    let size = header
        .entry_size()
        .map_err(|e| format!("an unreadable size: {e}"))?;
    let max = match name {
        EntryName::OciLayout => MAX_OCI_LAYOUT_ENTRY,
        EntryName::Index => MAX_INDEX_BYTES,
        EntryName::Dir => 0,
        EntryName::Blob(_) => MAX_BLOB_ENTRY,
    };
    if size > max {
        return Err(format!(
            "an entry {:?} of {size} bytes, over the limit of {max}",
            crate::registry::escape::shown(&String::from_utf8_lossy(path))
        ));
    }
    Ok(name)
}

/// Validate every entry of the archive at `path` without writing anything;
/// the sum of the sizes its entries declare.
pub fn validate(path: &Path) -> std::result::Result<u64, String> {
    let (file, _) = safe::open_regular(path, true).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut seen = HashSet::new();
    let (mut layout, mut index) = (false, false);
    let mut declared: u64 = 0;
    for (n, entry) in archive
        .entries_with_seek()
        .map_err(|e| format!("it is not a tar archive: {e}"))?
        .enumerate()
    {
        if n >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let entry = entry.map_err(|e| format!("entry {n} cannot be read: {e}"))?;
        let path = entry.path_bytes().into_owned();
        declared = declared.saturating_add(entry.header().entry_size().unwrap_or(0));
        match check_header(entry.header(), &path, &mut seen)? {
            EntryName::OciLayout => layout = true,
            EntryName::Index => index = true,
            _ => {}
        }
    }
    if !layout {
        return Err("it has no oci-layout entry: it is not an OCI layout archive".into());
    }
    if !index {
        return Err(
            "it has no index.json entry: the archive is incomplete (truncated, or its writer \
             was interrupted)"
                .into(),
        );
    }
    Ok(declared)
}

/// Extract a validated archive into `dest`, verifying every blob.
fn extract_into(path: &Path, dest: &Path) -> std::result::Result<(), String> {
    let (file, _) = safe::open_regular(path, true).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut seen = HashSet::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("an entry cannot be read: {e}"))?;
        let raw = entry.path_bytes().into_owned();
        // Checked again: the archive may have changed since validation.
        let name = check_header(entry.header(), &raw, &mut seen)?;
        let rel = match &name {
            EntryName::Dir => continue,
            EntryName::OciLayout => PathBuf::from("oci-layout"),
            EntryName::Index => PathBuf::from("index.json"),
            EntryName::Blob(d) => blob_relative_path(d),
        };
        let out = dest.join(&rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut f = safe::create_new(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut verifier = match &name {
            EntryName::Blob(d) => Some(d.verifier()),
            _ => None,
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&raw)))?;
            if n == 0 {
                break;
            }
            if let Some(v) = verifier.as_mut() {
                v.update(&buf[..n]);
            }
            f.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", out.display()))?;
        }
        if let (Some(v), EntryName::Blob(d)) = (verifier, &name)
            && let Err(actual) = v.finish()
        {
            return Err(format!("blob {d} holds content with digest {actual}"));
        }
    }
    Ok(())
}

/// An archive's extracted copy, private to one client.
pub struct ArchiveCopy {
    dir: tempfile::TempDir,
    /// The archive's stamp when extracted (or last packed); `None`: absent.
    stamp: Mutex<Option<FileStamp>>,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    std::fs::metadata(path).ok().map(|m| FileStamp::of(&m))
}

impl ArchiveCopy {
    /// Validate and extract `archive` (when it exists) into a new temporary
    /// directory.
    pub(crate) async fn extract(archive: &Path, label: &str) -> Result<ArchiveCopy> {
        let tmp = std::env::temp_dir();
        scratch::remove_leftovers(&tmp);
        let dir = tempfile::Builder::new()
            .prefix(&scratch::own_prefix())
            .tempdir_in(&tmp)
            .map_err(|e| {
                error(
                    Op::GetManifest,
                    label,
                    format!("cannot make a temporary directory for the archive's content: {e} (set TMPDIR to a directory with room)"),
                )
            })?;
        let stamp = stamp_of(archive);
        if stamp.is_some() {
            let (a, d) = (archive.to_path_buf(), dir.path().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let declared = validate(&a)?;
                scratch::check_room(&d, declared)?;
                extract_into(&a, &d)
            })
                .await
                .map_err(|e| error(Op::GetManifest, label, format!("extraction task failed: {e}")))?
                .map_err(|why| {
                    error(
                        Op::GetManifest,
                        label,
                        format!("refusing the archive: {why}; nothing was written outside a temporary directory"),
                    )
                })?;
        }
        Ok(ArchiveCopy {
            dir,
            stamp: Mutex::new(stamp),
        })
    }

    /// The extracted layout.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// True while the archive file is the one extracted (or last packed).
    pub(crate) fn is_current(&self, archive: &Path) -> bool {
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) == stamp_of(archive)
    }

    /// Pack the copy into `archive`: a temporary file beside it, then rename.
    pub(crate) async fn pack(&self, archive: &Path, label: &str) -> Result<()> {
        let (src, dest) = (self.dir().to_path_buf(), archive.to_path_buf());
        let label_owned = label.to_string();
        tokio::task::spawn_blocking(move || pack_blocking(&src, &dest, &label_owned))
            .await
            .map_err(|e| error(Op::PutManifest, label, format!("packing task failed: {e}")))??;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = stamp_of(archive);
        Ok(())
    }
}

fn pack_blocking(src: &Path, archive: &Path, label: &str) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| io_error(Op::PutManifest, label, p, &e);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(archive.file_name().unwrap_or_default());
    tmp_name.push(format!(".{}.tmp", safe::unique_suffix()));
    let tmp = archive.with_file_name(tmp_name);
    safe::check_dest(archive).map_err(|e| io(archive, e))?;
    let file = safe::create_new(&tmp).map_err(|e| io(&tmp, e))?;
    let result = (|| {
        let mut b = tar::Builder::new(file);
        append_file(&mut b, &src.join("oci-layout"), "oci-layout")?;
        append_dir(&mut b, "blobs/")?;
        let blobs = src.join("blobs");
        for alg in ["sha256", "sha512"] {
            let dir = blobs.join(alg);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            append_dir(&mut b, &format!("blobs/{alg}/"))?;
            let mut names: Vec<String> = rd
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| format!("{alg}:{n}").parse::<Digest>().is_ok())
                .collect();
            names.sort();
            for n in names {
                append_file(&mut b, &dir.join(&n), &format!("blobs/{alg}/{n}"))?;
            }
        }
        append_file(&mut b, &src.join("index.json"), "index.json")?;
        let file = b.into_inner()?;
        file.sync_all()?;
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp, e));
    }
    if let Err(e) = safe::rename_onto(&tmp, archive) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(archive, e));
    }
    let parent = archive.parent().unwrap_or(Path::new("."));
    sync_dir(parent).map_err(|e| io(parent, e))
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir(b: &mut tar::Builder<std::fs::File>, name: &str) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut h, name, std::io::empty())
}

fn append_file(
    b: &mut tar::Builder<std::fs::File>,
    path: &Path,
    name: &str,
) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = header(tar::EntryType::Regular, len, 0o644);
    b.append_data(&mut h, name, f.take(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        let d = Digest::sha256_of(b"x");
        let blob = format!("blobs/sha256/{}", d.hex());
        assert_eq!(
            entry_name(blob.as_bytes(), false),
            Ok(EntryName::Blob(d.clone()))
        );
        assert_eq!(
            entry_name(format!("./{blob}").as_bytes(), false),
            Ok(EntryName::Blob(d))
        );
        assert_eq!(entry_name(b"index.json", false), Ok(EntryName::Index));
        assert_eq!(entry_name(b"./oci-layout", false), Ok(EntryName::OciLayout));
        assert_eq!(entry_name(b"blobs/sha256/", true), Ok(EntryName::Dir));
        for bad in [
            "/index.json",
            "../index.json",
            "blobs/../index.json",
            "blobs/sha256/abc",
            "blobs/md5/abc",
            "etc/passwd",
            "blobs//sha256",
            "index.json/",
        ] {
            assert!(entry_name(bad.as_bytes(), false).is_err(), "{bad}");
        }
        assert!(entry_name(b"blobs/x/", true).is_err());
        assert!(entry_name(b"\xff", false).is_err());
    }
}
