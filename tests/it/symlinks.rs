//! Nothing is written through a planted symbolic link: the temporary file
//! beside an archive target, the archive path itself, a dangling
//! `FILE.lock` or `.regmirror.lock`; and a FIFO given as an archive or as a
//! layout's `index.json` is refused at once instead of hanging the run.

use crate::common;
use crate::layout_support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layout_support::umoci;

/// A directory with `good` (a umoci layout with tag `v1`) and `victim`
/// (a file that must never change).
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    async fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let good = root.join("good");
        umoci(&["init", "--layout", good.to_str().unwrap()]).await;
        umoci(&["new", "--image", &format!("{}:v1", good.display())]).await;
        std::fs::write(root.join("victim"), b"victim\n").unwrap();
        std::fs::create_dir(root.join("tmp")).unwrap();
        Sandbox { _dir: dir, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    async fn import_to(&self, target: &str) -> common::Run {
        let tmp = self.path("tmp");
        let source = format!("oci:{}:v1", self.path("good").display());
        common::regmirror_env(
            &["import", &source, target],
            &[("TMPDIR", tmp.to_str().unwrap())],
        )
        .await
    }

    fn assert_victim_untouched(&self) {
        assert_eq!(std::fs::read(self.path("victim")).unwrap(), b"victim\n");
    }
}

/// The last pid the kernel handed out.
fn last_pid() -> u32 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap();
    text.split_whitespace().last().unwrap().parse().unwrap()
}

fn refused(run: &common::Run, words: &[&str]) {
    assert_ne!(run.code, 0, "accepted: {}", run.stdout);
    for w in words {
        assert!(run.stderr.contains(w), "expected {w:?} in: {}", run.stderr);
    }
}

fn is_regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_archive_temp_files_are_not_written_through() {
    let sb = Sandbox::new().await;
    // The old name was `.FILE.<pid>.tmp`: plant it for the next pids.
    let next = last_pid();
    for pid in next..next + 400 {
        symlink(sb.path("victim"), sb.path(&format!(".out.tar.{pid}.tmp"))).unwrap();
    }
    let archive = sb.path("out.tar");
    let run = sb
        .import_to(&format!("oci-archive:{}:v1", archive.display()))
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    sb.assert_victim_untouched();
    assert!(is_regular(&archive), "the archive is a regular file");
    let links = std::fs::read_dir(&sb.root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_symlink())
        .count();
    assert_eq!(links, 400, "the planted links stay as they were");
    let tmp_files = std::fs::read_dir(&sb.root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(tmp_files, 0, "no temporary file is left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_path_that_is_a_symlink_is_not_written_through() {
    let sb = Sandbox::new().await;
    let archive = sb.path("out.tar");
    symlink(sb.path("victim"), &archive).unwrap();
    let run = sb
        .import_to(&format!("oci-archive:{}:v1", archive.display()))
        .await;
    assert_ne!(run.code, 0, "accepted: {}", run.stdout);
    sb.assert_victim_untouched();
    assert!(std::fs::symlink_metadata(&archive).unwrap().is_symlink());
}

#[tokio::test(flavor = "multi_thread")]
async fn dangling_lock_links_are_refused() {
    let sb = Sandbox::new().await;
    // Beside an archive: FILE.lock.
    let archive = sb.path("out.tar");
    symlink(sb.path("elsewhere.lock"), sb.path("out.tar.lock")).unwrap();
    let run = sb
        .import_to(&format!("oci-archive:{}:v1", archive.display()))
        .await;
    refused(&run, &["out.tar.lock", "symbolic link"]);
    assert!(!sb.path("elsewhere.lock").exists());
    assert!(!archive.exists());

    // Inside a layout directory: .regmirror.lock.
    let layout = sb.path("layout");
    std::fs::create_dir(&layout).unwrap();
    symlink(sb.path("elsewhere2.lock"), layout.join(".regmirror.lock")).unwrap();
    let run = sb.import_to(&format!("oci:{}:v1", layout.display())).await;
    refused(&run, &[".regmirror.lock", "symbolic link"]);
    assert!(!sb.path("elsewhere2.lock").exists());
    assert!(!layout.join("index.json").exists());
}

fn mkfifo(p: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn fifos_are_refused_at_open() {
    let sb = Sandbox::new().await;
    let fifo = sb.path("pipe.tar");
    mkfifo(&fifo);
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        common::regmirror(&["tags", &format!("oci-archive:{}", fifo.display())]),
    )
    .await
    .expect("a FIFO archive must not hang the run");
    refused(&run, &["not a regular file"]);

    let layout = sb.path("fifo-layout");
    std::fs::create_dir(&layout).unwrap();
    std::fs::copy(sb.path("good/oci-layout"), layout.join("oci-layout")).unwrap();
    mkfifo(&layout.join("index.json"));
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        common::regmirror(&["tags", &format!("oci:{}", layout.display())]),
    )
    .await
    .expect("a FIFO index.json must not hang the run");
    refused(&run, &["not a regular file"]);
}
