//! Policy files that rotate: public keys and trusted roots mounted from a
//! Kubernetes Secret or ConfigMap (or replaced by hand) are read again when
//! they change, so a rotated key takes effect at the next image judged,
//! without a restart or a reload of the config.
//!
//! Each file's modification time and size, as they were when the policy
//! was read, are kept; before an image is judged they are looked at again
//! (following symbolic links, as Kubernetes swaps its `..data` link on an
//! update) and, when one changed, every file is read again and the new
//! keys and trusted root are used from then on. A file that can no longer
//! be read fails the judgement with a message naming it, never lets an
//! image through.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Policy, TrustedKey, TrustedRoot};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A PEM public key.
    Key,
    /// A `trusted_root.json`.
    TrustedRoot,
}

/// One file of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Where it is read.
    pub path: PathBuf,
    /// How the config names it.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
}

type Stamp = Option<(SystemTime, u64)>;

/// The files of a policy, how they were when last read, and the policy
/// read from them since (when it changed).
#[derive(Debug)]
pub struct Sources {
    files: Vec<Source>,
    state: Mutex<(Vec<Stamp>, Option<Arc<Policy>>)>,
}

impl PartialEq for Sources {
    fn eq(&self, other: &Sources) -> bool {
        self.files == other.files
    }
}

impl Eq for Sources {}

impl Sources {
    /// `files` as they are now (just read into the policy).
    pub fn new(files: Vec<Source>) -> Sources {
        let stamps = files.iter().map(|f| stamp(f).ok()).collect();
        Sources {
            files,
            state: Mutex::new((stamps, None)),
        }
    }

    /// The policy `base` (read from these files) as the files are now:
    /// `None` when nothing changed since `base` was read.
    pub fn current(&self, base: &Policy) -> Result<Option<Arc<Policy>>, String> {
        let stamps = self
            .files
            .iter()
            .map(|f| stamp(f).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == stamps {
            return Ok(state.1.clone());
        }
        let fresh = Arc::new(self.read(base)?);
        *state = (stamps, Some(fresh.clone()));
        Ok(Some(fresh))
    }

    fn read(&self, base: &Policy) -> Result<Policy, String> {
        let mut keys = Vec::new();
        let mut trusted_root = None;
        for f in &self.files {
            match f.kind {
                Kind::Key => keys.push(TrustedKey::load(&f.path, &f.name)?),
                Kind::TrustedRoot => {
                    trusted_root = Some(Arc::new(TrustedRoot::load(&f.path, &f.name)?))
                }
            }
        }
        Ok(Policy {
            require: base.require,
            keys,
            identities: base.identities.clone(),
            trusted_root,
            sources: None,
        })
    }
}

fn stamp(f: &Source) -> Result<(SystemTime, u64), String> {
    let what = match f.kind {
        Kind::Key => "public key",
        Kind::TrustedRoot => "trusted root",
    };
    let meta = std::fs::metadata(&f.path).map_err(|e| {
        format!(
            "the signature policy's {what} {} cannot be read any more ({e}); restore it (a \
             Secret or ConfigMap still mounted?) or change the policy",
            f.name
        )
    })?;
    Ok((
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    ))
}
