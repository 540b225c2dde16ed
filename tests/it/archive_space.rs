//! Extraction of an `oci-archive:` is bounded: the sizes its entries
//! declare are checked against the budget (`REGMIRROR_ARCHIVE_BUDGET`) and
//! the free space of `TMPDIR` before anything is extracted, and the
//! extraction copies of killed runs are removed by the next run.

use crate::common;
use crate::layout_support;

use layout_support::umoci;

/// A directory with a valid archive `good.tar` (tag `v1`) and `tmp`.
async fn sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    umoci(&["init", "--layout", good.to_str().unwrap()]).await;
    umoci(&["new", "--image", &format!("{}:v1", good.display())]).await;
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let archive = dir.path().join("good.tar");
    let run = common::regmirror(&[
        "import",
        &format!("oci:{}:v1", good.display()),
        &format!("oci-archive:{}:v1", archive.display()),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    (dir, archive)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_over_the_extraction_budget_is_refused_before_extraction() {
    let (dir, archive) = sandbox().await;
    let tmp = dir.path().join("tmp");
    let run = common::regmirror_env(
        &["tags", &format!("oci-archive:{}", archive.display())],
        &[
            ("TMPDIR", tmp.to_str().unwrap()),
            ("REGMIRROR_ARCHIVE_BUDGET", "100"),
        ],
    )
    .await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("extraction budget"), "{}", run.stderr);
    assert!(
        run.stderr.contains("REGMIRROR_ARCHIVE_BUDGET"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "TMPDIR is left empty"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_left_by_killed_runs_are_removed_by_the_next_run() {
    let (dir, archive) = sandbox().await;
    let tmp = dir.path().join("tmp");
    // A process that is gone: its pid, once reaped.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let leftover = tmp.join(format!("regmirror-archive-{dead}-abc123"));
    std::fs::create_dir_all(leftover.join("blobs/sha256")).unwrap();
    std::fs::write(leftover.join("blobs/sha256/x"), vec![0u8; 4096]).unwrap();
    // A live process's copy (this test's own pid) and a stranger's name.
    let live = tmp.join(format!("regmirror-archive-{}-def456", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let other = tmp.join("something-else");
    std::fs::create_dir(&other).unwrap();

    let run = common::regmirror_env(
        &["tags", &format!("oci-archive:{}", archive.display())],
        &[("TMPDIR", tmp.to_str().unwrap())],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("v1"), "{}", run.stdout);
    assert!(!leftover.exists(), "the killed run's copy is removed");
    assert!(live.exists(), "a running process's copy is kept");
    assert!(other.exists(), "other directories are never touched");
}
