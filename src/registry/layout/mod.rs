//! OCI image layouts (`oci:DIR`) and archives of them (`oci-archive:FILE`)
//! as places that hold blobs and manifests: a [`Layout`] is a
//! [`crate::registry::transport::Transport`], used through the same
//! [`crate::registry::Client`] methods as a registry, so the copy engine and sync need no special case.
//!
//! # Names inside a layout
//!
//! A layout's `index.json` lists its tagged images; each entry's
//! `org.opencontainers.image.ref.name` annotation maps to a repository and a
//! tag of the layout (see [`crate::registry::reference::split_ref_name`]):
//! - a tag alone (`1.27`, as `skopeo copy … oci:dir:1.27` and umoci write
//!   it) is that tag of the layout's unnamed repository, `""`;
//!   `oci:dir:1.27` names it;
//! - `NAME:TAG` (`docker.io/library/nginx:1.27`) is tag `TAG` of repository
//!   `NAME`, kept as written (not normalised); `oci:dir:NAME:TAG` names it;
//!   one layout holds many repositories this way;
//! - other values (no valid tag, `+` in them) cannot be named; they are
//!   skipped when listing tags and still readable by digest;
//! - `oci:dir` with no REF reads as the layout's only image; with several,
//!   the error lists the names to add.
//!
//! [`crate::registry::Client::layout_names`] lists every (repository, tag) of a layout.
//! Untagged manifests (children of an index) are blobs only, never listed.
//!
//! # Writes
//!
//! Blobs and manifests are written to a temporary file under
//! `.regmirror-tmp/` while hashed, checked against their digest and size,
//! fsynced and renamed into `blobs/<alg>/<hex>`; a blob already present is
//! verified (once per client while its size and mtime stay the same) and not
//! rewritten. `index.json` is rewritten (temporary file, fsync, rename) only
//! when a tag is set, which the copy engine does after the image's whole
//! graph is in place: a killed run never leaves an entry pointing at missing
//! content, and a rerun resumes. One process writes a layout at a time (see
//! [`lock`]). An archive is extracted into a private temporary layout
//! (validated first, see [`archive`]), written there, and packed back by
//! [`crate::registry::Client::finish_layouts`] at the end of the run.
//!
//! # State and its lifetime
//!
//! The client keeps one [`Layout`] per path for its own lifetime: the writer
//! lock (taken at the first write, released when the client is dropped, so
//! a `serve` process stays the layout's one writer), the set of blobs verified (stale as soon as a file's size or
//! mtime changes, then verified again) and, for an archive, the extracted
//! copy (extracted again when the archive's size or mtime changes under a
//! client that is not writing it).

pub mod archive;
mod files;
mod index;
pub mod lock;
mod paths;
mod safe;
pub mod scratch;
mod store;
mod transport;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::{Error, Op, Result};
use super::reference::{LayoutLocation, Location, Reference};

pub use index::{IndexEntry, LayoutIndex};
pub use paths::{blob_relative_path, check_ref_name};
pub use store::Layout;

/// The `oci-layout` file's content.
pub const OCI_LAYOUT_FILE: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
/// Largest `index.json` read.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries in `index.json`.
pub const MAX_INDEX_ENTRIES: usize = 200_000;

/// The layouts one client has opened, by absolute path and transport.
#[derive(Default)]
pub(crate) struct Layouts {
    open: Mutex<HashMap<String, Arc<Layout>>>,
}

impl Layouts {
    /// The open layout at `location` (opened now if need be); `wait`: how
    /// long to wait for another writer's lock.
    pub(crate) fn get(&self, location: &LayoutLocation, wait: Duration) -> Result<Arc<Layout>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = open.get(location.key())
            && l.is_current()
        {
            return Ok(l.clone());
        }
        let layout = Arc::new(Layout::new(location.clone(), wait)?);
        open.insert(location.key().to_string(), layout.clone());
        Ok(layout)
    }

    /// The layout `r` names; an error for a registry reference.
    fn require(&self, r: &Reference, op: Op, wait: Duration) -> Result<Arc<Layout>> {
        match r.location() {
            Location::Layout(at) => self.get(at, wait),
            Location::Registry(_) => Err(error(
                op,
                r.to_string(),
                "not an oci: or oci-archive: reference",
            )),
        }
    }

    /// Every (repository, tag) of the layout `r` names (see
    /// [`LayoutIndex::names`]).
    pub(crate) async fn names(
        &self,
        r: &Reference,
        wait: Duration,
    ) -> Result<Vec<(String, String)>> {
        let layout = self.require(r, Op::ListTags, wait)?;
        let index = layout.read_index(Op::ListTags, &r.name()).await?;
        Ok(index.names())
    }

    /// [`Self::names`], with how many entries were skipped because their
    /// `ref.name` cannot be named (see [`LayoutIndex::unnamed`]).
    pub(crate) async fn names_counted(
        &self,
        r: &Reference,
        wait: Duration,
    ) -> Result<(Vec<(String, String)>, usize)> {
        let layout = self.require(r, Op::ListTags, wait)?;
        let index = layout.read_index(Op::ListTags, &r.name()).await?;
        Ok((index.names(), index.unnamed()))
    }

    /// For a layout reference without tag or digest: the layout's only
    /// image as a full reference; other references come back unchanged.
    pub(crate) async fn only_image(&self, r: &Reference, wait: Duration) -> Result<Reference> {
        if !matches!(r.location(), Location::Layout(_)) || r.tag().is_some() || r.digest().is_some()
        {
            return Ok(r.clone());
        }
        let layout = self.require(r, Op::GetManifest, wait)?;
        let index = layout.read_index(Op::GetManifest, &r.name()).await?;
        let entry = index.only_image(r)?;
        Ok(entry.reference_in(r))
    }

    /// Pack every archive changed (see [`Layout::finish`]).
    pub(crate) async fn finish_all(&self) -> Result<()> {
        let all: Vec<Arc<Layout>> = {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            open.values().cloned().collect()
        };
        for layout in all {
            layout.finish().await?;
        }
        Ok(())
    }
}

/// A layout error.
pub(crate) fn error(op: Op, target: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Layout {
        op,
        target: target.into(),
        detail: detail.into(),
        not_found: false,
    }
}

/// A layout "not found" error.
pub(crate) fn not_found(op: Op, target: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Layout {
        op,
        target: target.into(),
        detail: detail.into(),
        not_found: true,
    }
}

/// An I/O error on a layout file, with the path.
pub(crate) fn io_error(op: Op, target: &str, path: &Path, e: &std::io::Error) -> Error {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied => ": check the permissions of the layout directory",
        std::io::ErrorKind::StorageFull => ": the disk is full",
        _ => "",
    };
    error(op, target, format!("{}: {e}{hint}", path.display()))
}
