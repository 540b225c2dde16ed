//! Hostile layouts and archives, built here, are refused with a message
//! naming the problem and nothing written outside the target directory:
//! traversal digests in index.json, symlinked blobs and blob directories,
//! corrupt blobs; archive members that are links, devices, absolute paths,
//! `..`, duplicates, oversized or foreign, and truncated archives.

use crate::common;
use crate::layout_support;

use std::path::{Path, PathBuf};

use common::regmirror_env;
use layout_support::{files_under, sha256, umoci};

/// A sandbox: `good` (a valid umoci layout with tag `v1`), `outside` (must
/// stay as it is), `tmp` (TMPDIR of the runs, must end empty).
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
        std::fs::create_dir(root.join("outside")).unwrap();
        std::fs::write(root.join("outside/secret"), b"secret\n").unwrap();
        std::fs::create_dir(root.join("tmp")).unwrap();
        Sandbox { _dir: dir, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Run regmirror with TMPDIR in the sandbox.
    async fn run(&self, args: &[&str]) -> common::Run {
        let tmp = self.path("tmp");
        regmirror_env(args, &[("TMPDIR", tmp.to_str().unwrap())]).await
    }

    /// `outside` unchanged, `tmp` empty.
    fn assert_nothing_escaped(&self) {
        assert_eq!(files_under(&self.path("outside")), vec!["secret"]);
        assert_eq!(
            std::fs::read(self.path("outside/secret")).unwrap(),
            b"secret\n"
        );
        assert_eq!(files_under(&self.path("tmp")), Vec::<String>::new());
    }
}

/// Copy of the good layout at `rel`.
fn copy_layout(sb: &Sandbox, rel: &str) -> PathBuf {
    let dest = sb.path(rel);
    let src = sb.path("good");
    for f in files_under(&src) {
        let from = src.join(&f);
        let to = dest.join(&f);
        if from.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
    dest
}

fn index(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn assert_refused(run: &common::Run, words: &[&str]) {
    assert_ne!(run.code, 0, "accepted: {}", run.stdout);
    for w in words {
        assert!(run.stderr.contains(w), "expected {w:?} in: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layout_directories_are_refused() {
    let sb = Sandbox::new().await;
    let out = format!("oci:{}", sb.path("out").display());

    // A traversal digest in index.json.
    let bad = copy_layout(&sb, "traversal");
    let mut idx = index(&bad);
    idx["manifests"][0]["digest"] = "sha256:../../outside/secret".into();
    std::fs::write(bad.join("index.json"), idx.to_string()).unwrap();
    let run = sb
        .run(&["import", &format!("oci:{}:v1", bad.display()), &out])
        .await;
    assert_refused(&run, &["index.json", "malformed"]);

    // A blob that is a symlink to a file outside the layout (its content
    // even matches the digest it is filed under).
    let bad = copy_layout(&sb, "symlinked");
    let secret = sb.path("outside/secret");
    let digest = sha256(b"secret\n");
    let mut idx = index(&bad);
    idx["manifests"][0]["digest"] = digest.clone().into();
    idx["manifests"][0]["size"] = 7.into();
    std::fs::write(bad.join("index.json"), idx.to_string()).unwrap();
    let link = bad
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let run = sb
        .run(&["import", &format!("oci:{}:v1", bad.display()), &out])
        .await;
    assert_refused(&run, &["not a regular file"]);

    // A corrupt blob: content that does not match its digest.
    let bad = copy_layout(&sb, "corrupt");
    let d = index(&bad)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = bad
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let run = sb
        .run(&["import", &format!("oci:{}:v1", bad.display()), &out])
        .await;
    assert_refused(&run, &["digest"]);
    assert!(
        !sb.path("out").exists(),
        "a refused source wrote the target"
    );

    // An index.json over 64 MiB and a manifest over 4 MiB (sparse files).
    let bad = copy_layout(&sb, "huge-index");
    std::fs::File::create(bad.join("index.json"))
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let run = sb
        .run(&["import", &format!("oci:{}:v1", bad.display()), &out])
        .await;
    assert_refused(&run, &["index.json", "over the limit of 67108864"]);
    let bad = copy_layout(&sb, "huge-manifest");
    let fake = format!("sha256:{}", "ab".repeat(32));
    let mut idx = index(&bad);
    idx["manifests"][0]["digest"] = fake.clone().into();
    std::fs::write(bad.join("index.json"), idx.to_string()).unwrap();
    std::fs::File::create(bad.join("blobs/sha256").join("ab".repeat(32)))
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    let run = sb
        .run(&["import", &format!("oci:{}:v1", bad.display()), &out])
        .await;
    assert_refused(&run, &["over the limit of 4194304"]);

    // A target whose blob directory is a symlink out of the layout.
    let target = copy_layout(&sb, "target");
    std::fs::remove_dir_all(target.join("blobs/sha256")).unwrap();
    std::os::unix::fs::symlink(sb.path("outside"), target.join("blobs/sha256")).unwrap();
    let run = sb
        .run(&[
            "import",
            &format!("oci:{}:v1", sb.path("good").display()),
            &format!("oci:{}:copy", target.display()),
        ])
        .await;
    assert_refused(&run, &["not a directory"]);

    // A target directory that is not a layout is not written into.
    let run = sb
        .run(&[
            "import",
            &format!("oci:{}:v1", sb.path("good").display()),
            &format!("oci:{}:copy", sb.path("outside").display()),
        ])
        .await;
    assert_refused(&run, &["not an OCI image layout"]);
    sb.assert_nothing_escaped();
}

/// One raw tar member: `name` and `link` written byte for byte (no
/// normalisation), so hostile names reach the reader as they are.
fn member(out: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, data: &[u8], link: &[u8]) {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// The good layout's members: oci-layout, blobs, index.json (last).
fn good_members(sb: &Sandbox) -> Vec<(Vec<u8>, Vec<u8>)> {
    let good = sb.path("good");
    let mut out = vec![(
        b"oci-layout".to_vec(),
        std::fs::read(good.join("oci-layout")).unwrap(),
    )];
    for f in files_under(&good) {
        if f.starts_with("blobs/sha256/") {
            out.push((
                f.clone().into_bytes(),
                std::fs::read(good.join(&f)).unwrap(),
            ));
        }
    }
    out.push((
        b"index.json".to_vec(),
        std::fs::read(good.join("index.json")).unwrap(),
    ));
    out
}

/// A member to add: name, type, data, link name.
type Extra<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// The good archive with `extra` members inserted before index.json.
fn archive_with(sb: &Sandbox, extra: &[Extra<'_>]) -> Vec<u8> {
    let mut members = good_members(sb);
    let index = members.pop().unwrap();
    let mut out = Vec::new();
    for (n, d) in &members {
        member(&mut out, n, tar::EntryType::Regular, d, b"");
    }
    for (n, k, d, l) in extra {
        member(&mut out, n, *k, d, l);
    }
    member(&mut out, &index.0, tar::EntryType::Regular, &index.1, b"");
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_archives_are_refused_before_anything_is_written() {
    let sb = Sandbox::new().await;
    let escaped = sb.path("outside/pwned");
    let escaped_abs = escaped.to_str().unwrap().as_bytes().to_vec();
    let good_blob = good_members(&sb)[1].0.clone();
    let blob_hex = String::from_utf8(good_blob.clone()).unwrap();
    let dotdot = b"../../outside/pwned".to_vec();
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "symlink",
            archive_with(
                &sb,
                &[(b"blobs/sha256/aa", T::Symlink, b"", b"/etc/passwd")],
            ),
            vec!["symbolic link"],
        ),
        (
            "hardlink",
            archive_with(&sb, &[(b"blobs/sha256/aa", T::Link, b"", b"index.json")]),
            vec!["hard link"],
        ),
        (
            "device",
            archive_with(&sb, &[(b"blobs/sha256/aa", T::Char, b"", b"")]),
            vec!["device"],
        ),
        (
            "fifo",
            archive_with(&sb, &[(b"oci-fifo", T::Fifo, b"", b"")]),
            vec!["FIFO"],
        ),
        (
            "absolute",
            archive_with(&sb, &[(&escaped_abs, T::Regular, b"pwned", b"")]),
            vec!["absolute path"],
        ),
        (
            "dotdot",
            archive_with(&sb, &[(&dotdot, T::Regular, b"pwned", b"")]),
            vec!["'..'"],
        ),
        (
            "duplicate",
            archive_with(&sb, &[(good_blob.as_slice(), T::Regular, b"other", b"")]),
            vec!["duplicate entry", &blob_hex],
        ),
        (
            "oversized",
            {
                let mut a = archive_with(&sb, &[]);
                // A second archive whose oci-layout claims 5000 bytes.
                a.clear();
                member(&mut a, b"oci-layout", T::Regular, &[b' '; 5000], b"");
                a.extend_from_slice(&[0u8; 1024]);
                a
            },
            vec!["over the limit"],
        ),
        (
            "foreign",
            archive_with(&sb, &[(b"etc/cron.d/x", T::Regular, b"x", b"")]),
            vec!["not part of an OCI layout"],
        ),
        (
            "bad-digest-name",
            archive_with(&sb, &[(b"blobs/sha256/../../x", T::Regular, b"x", b"")]),
            vec!["'..'"],
        ),
        (
            "truncated",
            {
                let mut members = good_members(&sb);
                members.pop();
                let mut a = Vec::new();
                for (n, d) in &members {
                    member(&mut a, n, T::Regular, d, b"");
                }
                a
            },
            vec!["incomplete"],
        ),
    ];
    for (name, bytes, words) in cases {
        let file = sb.path(&format!("{name}.tar"));
        std::fs::write(&file, &bytes).unwrap();
        let target = sb.path(&format!("out-{name}"));
        let run = sb
            .run(&[
                "import",
                &format!("oci-archive:{}:v1", file.display()),
                &format!("oci:{}", target.display()),
            ])
            .await;
        assert_refused(&run, &words);
        assert!(
            run.stderr.contains("refusing the archive"),
            "{name}: {}",
            run.stderr
        );
        assert!(!target.exists(), "{name}: the target was written");
        assert!(!escaped.exists(), "{name}: a member escaped");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "{name}: archive changed"
        );
        sb.assert_nothing_escaped();

        // The same archive as a target is refused too, and left as it was.
        let run = sb
            .run(&[
                "import",
                &format!("oci:{}:v1", sb.path("good").display()),
                &format!("oci-archive:{}:v2", file.display()),
            ])
            .await;
        assert_refused(&run, &["refusing the archive"]);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "{name}: archive changed"
        );
        sb.assert_nothing_escaped();
    }
}
