//! The run-state store's part in one image (see [`crate::sync::state`]):
//! every tag found mirrored (copied or up to date) is recorded with its
//! digests and the shape of the copy; a tag the mirror declares immutable,
//! recorded with the mirror's current shape and checked less than
//! `full_check_every` ago, is trusted without a request; and a new upstream
//! digest seen for less than the mirror's `min_age` is held.
//!
//! The shape is a fingerprint of the mirror's settings that change what a
//! copy writes (`platforms`, `platforms_optional`, `convert_schema1`,
//! `referrers`): a record made under other settings is not trusted, so a
//! changed `platforms` is applied at the next run, not at the next full
//! check. A record is rewritten only when its digests or shape changed or
//! it is half `full_check_every` old (which renews it before an immutable
//! tag's trust runs out): a run that finds nothing new writes nothing for
//! most tags.
//!
//! A trusted tag is reported `skipped` with the recorded digests; its
//! referrers are brought up to date by the next full check.

use super::{ImageReport, ImageResult, Syncer};
use crate::registry::{Digest, Reference};
use crate::sync::model::Mirror;
use crate::sync::state::{Held, TagRecord, clock};

/// The shape of `mirror`'s copies: 16 hex digits of the SHA-256 of the
/// settings that change what a copy writes (their debug form: a new
/// version of regmirror may change it, which costs one check per tag).
pub(super) fn shape(mirror: &Mirror) -> String {
    let settings = format!(
        "{:?}|{}|{}|{:?}",
        mirror.platforms, mirror.platforms_optional, mirror.convert_schema1, mirror.referrers
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, settings.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

/// True when `record` already says what a run found (`source digest,
/// target digest, shape`) and was written less than `renew_after` seconds
/// before `now`: no need to write it again.
fn current(
    record: Option<&TagRecord>,
    (source, target, shape): (&str, &str, &str),
    renew_after: u64,
    now: u64,
) -> bool {
    record.is_some_and(|r| {
        r.source_digest == source
            && r.target_digest == target
            && r.shape == shape
            && now
                .checked_sub(r.checked)
                .is_some_and(|age| age < renew_after)
    })
}

impl Syncer {
    /// What the store recorded of this image (`report`'s source and target),
    /// for a tag (not a digest); `None` without a store or a record.
    pub(super) fn recorded(&self, source: &Reference, report: &ImageReport) -> Option<TagRecord> {
        let store = self.state.as_ref()?;
        source.tag().filter(|_| source.digest().is_none())?;
        store.tag(&report.source, &report.target)
    }

    /// True, with `report` made `skipped`, when `record` is trusted (see
    /// the module doc); false, `report` unchanged, otherwise.
    pub(super) fn trusted(
        &self,
        mirror: &Mirror,
        source: &Reference,
        record: Option<&TagRecord>,
        shape: &str,
        report: &mut ImageReport,
    ) -> bool {
        let (Some(tag), Some(record)) = (source.tag(), record) else {
            return false;
        };
        if !mirror.state.is_immutable(tag) || record.shape != shape {
            return false;
        }
        let age = clock::now().checked_sub(record.checked);
        if age.is_none_or(|a| a >= mirror.state.full_check_every.as_secs()) {
            return false;
        }
        tracing::debug!(mirror = %mirror.name, source = %report.source, target = %report.target,
            digest = %record.source_digest, "immutable tag mirrored before: trusted without a request");
        report.result = ImageResult::Skipped;
        report.source_digest = Some(record.source_digest.clone());
        report.target_digest = Some(record.target_digest.clone());
        true
    }

    /// Record a tag found mirrored (copied or up to date), unless `record`
    /// already says so and is less than half `full_check_every` old.
    pub(super) fn note_mirrored(
        &self,
        mirror: &Mirror,
        source: &Reference,
        (record, shape): (Option<&TagRecord>, &str),
        report: &ImageReport,
    ) {
        let Some(store) = &self.state else {
            return;
        };
        if self.options.dry_run
            || source.tag().is_none()
            || source.digest().is_some()
            || !matches!(report.result, ImageResult::Copied | ImageResult::Skipped)
        {
            return;
        }
        let (Some(s), Some(t)) = (&report.source_digest, &report.target_digest) else {
            return;
        };
        let renew_after = mirror.state.full_check_every.as_secs() / 2;
        if !current(record, (s, t, shape), renew_after, clock::now()) {
            store.note_tag(&report.source, &report.target, s, t, shape);
        }
    }

    /// True, with `report` made `held`, when `digest` was first seen under
    /// the source tag less than the mirror's `min_age` ago; false, `report`
    /// unchanged, otherwise.
    pub(super) fn hold_young(
        &self,
        mirror: &Mirror,
        source: &Reference,
        digest: &Digest,
        report: &mut ImageReport,
    ) -> bool {
        let (Some(store), Some(min_age)) = (&self.state, mirror.state.min_age) else {
            return false;
        };
        if source.tag().is_none() || source.digest().is_some() {
            return false;
        }
        let first = store.first_seen(&report.source, &digest.to_string());
        let eligible = first.saturating_add(min_age.as_secs());
        if clock::now() >= eligible {
            return false;
        }
        tracing::info!(mirror = %mirror.name, source = %report.source, digest = %digest,
            eligible_at = %clock::rfc3339(eligible), "new source digest held until it is min_age old");
        report.result = ImageResult::Held;
        report.held = Some(Box::new(Held {
            first_seen: clock::rfc3339(first),
            eligible_at: clock::rfc3339(eligible),
        }));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_rewritten_when_what_it_says_changed_or_it_is_half_its_trust_old() {
        let r = TagRecord {
            checked: 1000,
            source_digest: "sha256:s".into(),
            target_digest: "sha256:t".into(),
            shape: "abc".into(),
        };
        let found = ("sha256:s", "sha256:t", "abc");
        assert!(current(Some(&r), found, 600, 1599));
        assert!(
            !current(Some(&r), found, 600, 1600),
            "half full_check_every old"
        );
        assert!(!current(None, found, 600, 1000), "no record");
        for changed in [
            ("sha256:x", "sha256:t", "abc"),
            ("sha256:s", "sha256:x", "abc"),
            ("sha256:s", "sha256:t", "abd"),
        ] {
            assert!(!current(Some(&r), changed, 600, 1001), "{changed:?}");
        }
        assert!(!current(Some(&r), found, 600, 999), "a clock gone back");
    }

    #[test]
    fn the_shape_follows_the_settings_that_change_a_copy() {
        let config = |extra: &str| {
            let text = format!("[[mirror]]\nsource = \"r:5000/a\"\ntarget = \"t:5000/a\"\n{extra}");
            let c =
                crate::sync::config::Config::parse(std::path::Path::new("m.toml"), &text).unwrap();
            shape(&c.mirrors[0])
        };
        let plain = config("");
        assert_eq!(plain.len(), 16);
        assert_eq!(plain, config(""), "stable");
        assert_eq!(
            plain,
            config("schedule = \"0 0 0 1 1 *\"\n"),
            "not a copy setting"
        );
        for changed in [
            "platforms = [\"linux/amd64\"]\n",
            "platforms = [\"linux/amd64\"]\nplatforms_optional = true\n",
            "convert_schema1 = true\n",
            "referrers = false\n",
        ] {
            assert_ne!(plain, config(changed), "{changed}");
        }
    }
}
