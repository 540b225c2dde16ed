//! The tables of the run-state store, each with the lifetime of its
//! entries. Every entry carries the time it was last confirmed; entries past
//! their lifetime are dropped when the store is opened (see
//! [`super::StateStore::open`]), which bounds the file's size by what the
//! mirrors touched within the longest lifetime.

use redb::TableDefinition;

/// One day, in seconds.
const DAY: u64 = 24 * 3600;

/// Blob locations: `registry \0 digest \0 repository` → when a run last saw
/// that repository hold the blob (Unix seconds).
///
/// Lifetime: [`BLOB_LIFETIME`] after it was last seen. A stale entry costs
/// one mount request that fails (the blob is then uploaded), never a wrong
/// result.
pub(super) const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("blob_locations");
/// How long a blob location is kept after it was last seen.
pub const BLOB_LIFETIME: u64 = 30 * DAY;

/// Tags mirrored: `source reference \0 target reference` (tags included) →
/// (when a run last checked or copied it, source digest, target digest,
/// the shape of the copy: a fingerprint of the mirror's settings that
/// change what a copy writes, see `crate::sync::run`).
///
/// Every tag a run finds mirrored (copied or up to date) is recorded, so
/// `regmirror verify --no-source` knows what each target tag should be.
/// A record is rewritten only when its digests or shape changed or it is
/// half `full_check_every` old: a run that finds nothing new writes
/// nothing for most tags.
///
/// Lifetime: [`TAG_LIFETIME`] after that check. A run trusts an entry only
/// for a tag its mirror declares immutable, only while the entry is younger
/// than the mirror's `full_check_every` and only when its shape is the
/// mirror's current one; otherwise the tag is checked with HEADs as usual
/// and the entry renewed.
pub(super) const TAGS: TableDefinition<&str, (u64, &str, &str, &str)> =
    TableDefinition::new("tags_mirrored_v2");
/// The table of tags mirrored before records had a shape; dropped when the
/// store is opened (its entries cost one check each, once).
pub(super) const OLD_TAGS: TableDefinition<&str, (u64, &str, &str)> =
    TableDefinition::new("tags_mirrored");
/// How long a mirrored-tag entry is kept after its last check.
pub const TAG_LIFETIME: u64 = 30 * DAY;

/// First sightings: source reference (tag included) → (when its current
/// digest was first seen, when it was last seen, that digest).
///
/// Lifetime: [`FIRST_SEEN_LIFETIME`] after it was last seen. An entry lost
/// early (store deleted) makes `min_age` hold a new digest longer, from its
/// next sighting: the safe direction.
pub(super) const FIRST_SEEN: TableDefinition<&str, (u64, u64, &str)> =
    TableDefinition::new("first_seen");
/// How long a first sighting is kept after the digest was last seen.
pub const FIRST_SEEN_LIFETIME: u64 = 30 * DAY;

/// Source repositories without referrers: `registry \0 repository` → when
/// a run last found it with no referrers API and no referrer tag (Unix
/// seconds). A run that finds either drops the entry.
///
/// Lifetime: [`NO_REFERRERS_LIFETIME`] after that finding, and a mirror
/// trusts it no longer than its `full_check_every`: a referrer pushed
/// upstream meanwhile is copied by the first run after that, not at once.
pub(super) const NO_REFERRERS: TableDefinition<&str, u64> = TableDefinition::new("no_referrers");
/// How long a finding of no referrers is kept and trusted at most.
pub const NO_REFERRERS_LIFETIME: u64 = DAY;

/// The key of a blob location; a prefix of it (without the repository)
/// finds every repository holding the blob.
pub(super) fn blob_key(registry: &str, digest: &str, repository: &str) -> String {
    format!("{registry}\0{digest}\0{repository}")
}

/// The key of a source repository's referrers finding.
pub(super) fn repository_key(registry: &str, repository: &str) -> String {
    format!("{registry}\0{repository}")
}

/// The key of a mirrored tag.
pub(super) fn tag_key(source: &str, target: &str) -> String {
    format!("{source}\0{target}")
}
