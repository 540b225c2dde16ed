//! File helpers of the layout store: reading a capped regular file,
//! hashing a file, syncing a directory, identifying a file's content without
//! reading it, and a verifying blob stream.

use std::path::Path;
use std::time::SystemTime;

use futures_util::StreamExt;

use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::transport::ByteStream;

use super::{error, io_error, not_found};

/// What identifies a file's content without reading it: size, mtime, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp(u64, Option<SystemTime>, u64);

impl FileStamp {
    pub(crate) fn of(m: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp(m.len(), m.modified().ok(), m.ino())
    }
}

/// Read a regular file (not a symlink, not a device) of at most `max` bytes.
pub(crate) fn read_regular(path: &Path, max: u64, op: Op, target: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(
                op,
                target,
                format!("{} does not exist", path.display()),
            ));
        }
        Err(e) => return Err(io_error(op, target, path, &e)),
    };
    if !meta.is_file() {
        return Err(error(
            op,
            target,
            format!(
                "{} is not a regular file (a symlink, directory or device): refusing to read it",
                path.display()
            ),
        ));
    }
    if meta.len() > max {
        return Err(error(
            op,
            target,
            format!(
                "{} is {} bytes, over the limit of {max}",
                path.display(),
                meta.len()
            ),
        ));
    }
    // Opened without following a link or blocking on a FIFO: the path may
    // have changed since the check above.
    let (f, meta) =
        super::safe::open_regular(path, false).map_err(|e| io_error(op, target, path, &e))?;
    if meta.len() > max {
        return Err(error(
            op,
            target,
            format!("{} grew over the limit of {max} bytes", path.display()),
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(op, target, path, &e))?;
    if buf.len() as u64 > max {
        return Err(error(
            op,
            target,
            format!("{} grew over the limit of {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

/// True when the file at `path` hashes to `d`.
pub(crate) fn hash_file_matches(path: &Path, d: &Digest) -> std::io::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut v = d.verifier();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n]);
    }
    Ok(v.finish().is_ok())
}

/// fsync a directory, so renames into it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A blob stream whose last item is an error when the bytes do not match
/// `d`.
pub(crate) fn verified_stream(
    inner: tokio_util::io::ReaderStream<tokio::fs::File>,
    d: Digest,
    target: String,
) -> ByteStream {
    let state = (inner, Some(d.verifier()), d, target);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut inner, mut v, d, target)| async move {
            let verifier = v.as_mut()?;
            match inner.next().await {
                Some(Ok(b)) => {
                    verifier.update(&b);
                    Some((Ok(b), (inner, v, d, target)))
                }
                Some(Err(e)) => {
                    let err = error(Op::GetBlob, target.clone(), format!("read failed: {e}"));
                    Some((Err(err), (inner, None, d, target)))
                }
                None => match v.take().expect("checked").finish() {
                    Ok(()) => None,
                    Err(actual) => {
                        let err = Error::DigestMismatch {
                            op: Op::GetBlob,
                            target: target.clone(),
                            expected: d.clone(),
                            actual,
                        };
                        Some((Err(err), (inner, None, d, target)))
                    }
                },
            }
        },
    ))
}
