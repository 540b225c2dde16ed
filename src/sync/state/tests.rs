//! The store's own behaviour: entries survive a reopen, an unreadable file
//! is moved aside, a second open of a held file is refused.

use super::*;

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}

#[test]
fn entries_survive_a_reopen_and_locations_exclude_other_blobs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = StateStore::open(dir.path()).unwrap();
        s.record("r:5000", "a/one", &digest('a'));
        s.record("r:5000", "a/two", &digest('a'));
        s.record("r:5000", "a/three", &digest('b'));
        s.note_tag("src/x:1", "r:5000/x:1", "sha256:s", "sha256:t", "shape-1");
        assert_eq!(s.first_seen("src/x:1", "sha256:s"), clock::now());
    }
    let s = StateStore::open(dir.path()).unwrap();
    let mut found = s.find("r:5000", &digest('a'));
    found.sort();
    assert_eq!(found, vec!["a/one".to_string(), "a/two".to_string()]);
    assert!(s.find("other:5000", &digest('a')).is_empty());
    let t = s.tag("src/x:1", "r:5000/x:1").unwrap();
    assert_eq!(
        (t.source_digest.as_str(), t.target_digest.as_str()),
        ("sha256:s", "sha256:t")
    );
    assert!(s.tag("src/x:2", "r:5000/x:2").is_none());
}

#[test]
fn a_new_digest_is_first_seen_anew() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(dir.path()).unwrap();
    let first = s.first_seen("src/x:1", "sha256:old");
    s.flush();
    assert_eq!(s.first_seen("src/x:1", "sha256:old"), first);
    assert!(s.first_seen("src/x:1", "sha256:new") >= first);
}

#[test]
fn an_unreadable_file_is_moved_aside_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 9000]).unwrap();
    let s = StateStore::open(dir.path()).expect("a new store replaces the unreadable one");
    s.record("r:5000", "a", &digest('a'));
    s.flush();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.redb.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the unreadable file is kept aside");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), vec![0x5a; 9000]);
}

#[test]
fn a_held_store_is_not_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let held = StateStore::open(dir.path()).unwrap();
    assert!(StateStore::open(dir.path()).is_none());
    drop(held);
    assert!(StateStore::open(dir.path()).is_some());
}

#[test]
fn a_finding_of_no_referrers_is_trusted_within_its_age_and_dropped_when_referrers_appear() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(tables::NO_REFERRERS_LIFETIME);
    {
        let s = StateStore::open(dir.path()).unwrap();
        assert!(!s.remembers_none("r:5000", "a/app", day));
        s.note("r:5000", "a/app", true);
        s.note("r:5000", "a/other", true);
        assert!(s.remembers_none("r:5000", "a/app", day), "pending");
    }
    let s = StateStore::open(dir.path()).unwrap();
    assert!(s.remembers_none("r:5000", "a/app", day), "committed");
    assert!(!s.remembers_none("r:5000", "a/app", Duration::ZERO));
    assert!(!s.remembers_none("r:5001", "a/app", day));
    s.note("r:5000", "a/app", false);
    s.flush();
    assert!(!s.remembers_none("r:5000", "a/app", day));
    assert!(s.remembers_none("r:5000", "a/other", day));
}

#[test]
fn a_tag_record_keeps_its_shape_and_the_old_table_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(OLD_TAGS)
            .unwrap()
            .insert(
                "src/x:1\0r:5000/x:1",
                (clock::now(), "sha256:s", "sha256:t"),
            )
            .unwrap();
        txn.commit().unwrap();
    }
    let s = StateStore::open(dir.path()).expect("a store with the old table opens");
    assert!(
        s.tag("src/x:1", "r:5000/x:1").is_none(),
        "old records are not read"
    );
    s.note_tag("src/x:1", "r:5000/x:1", "sha256:s", "sha256:t", "abc");
    s.flush();
    assert_eq!(s.tag("src/x:1", "r:5000/x:1").unwrap().shape, "abc");
    let txn = s.db.begin_read().unwrap();
    assert!(txn.open_table(OLD_TAGS).is_err(), "the old table is gone");
}
