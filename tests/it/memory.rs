//! Memory proportional to input: a 4 MiB `index.json` padded with
//! millions of tiny JSON values (the shape that costs the most as a
//! generic value tree) is read, written into, and a 4 MiB registry index
//! of that shape is copied with `--platform`, each run's peak resident
//! memory (measured with `wait4` on the child) staying a small multiple
//! of the input.

use crate::common;
use crate::layout_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, push};
use layout_support::umoci;
use serde_json::Value;

const MIB: usize = 1024 * 1024;
/// Peak RSS allowed for one run on a 4 MiB input: the binary's own base
/// (runtime, TLS, allocator) plus a small multiple of the input.
const BUDGET: u64 = 96 * MIB as u64;

/// Environment variable that turns [`rss_probe`] into a launcher: the
/// arguments to run regmirror with, NUL-separated.
const PROBE_ARGS: &str = "REGMIRROR_TEST_RSS_ARGS";

/// Run the binary to completion; its exit code, stderr and peak RSS. A
/// child's `ru_maxrss` includes the memory of the process it was forked
/// from, so the binary is started by a fresh, small copy of this test
/// binary running [`rss_probe`], which reports the peak on stdout.
async fn run_measured(args: &[&str]) -> (i32, String, u64) {
    let me = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new(me)
        .args([
            "--exact",
            "memory::rss_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_ARGS, args.join("\u{1f}"))
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.find(key).map(|i| l[i + key.len()..].trim()))
            .unwrap_or_else(|| panic!("no {key} from the probe: {stdout}"))
            .to_string()
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = field("rss-probe-code=").parse().unwrap();
    let rss = field("rss-probe-maxrss=").parse().unwrap();
    (code, stderr, rss)
}

/// With [`PROBE_ARGS`] set: run regmirror with them, wait for it with
/// `wait4` and print its exit code and peak RSS. Without: nothing.
#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4, which std does not know
fn rss_probe() {
    let Ok(args) = std::env::var(PROBE_ARGS) else {
        return;
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(args.split('\u{1f}'))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the locals above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    println!("rss-probe-code={code}");
    println!("rss-probe-maxrss={}", usage.ru_maxrss as u64 * 1024);
}

/// `{},` repeated to make `extra` bytes: an array of empty objects.
fn padding(extra: usize) -> Value {
    Value::Array(vec![Value::Object(Default::default()); extra / 3])
}

fn set_padded(path: &Path, doc: &mut Value, total: usize) {
    let base = serde_json::to_vec(doc).unwrap().len();
    doc["x-padding"] = padding(total - base - 32);
    std::fs::write(path, serde_json::to_vec(doc).unwrap()).unwrap();
}

fn within_budget(what: &str, rss: u64) {
    eprintln!("{what}: peak RSS {} MiB", rss / MIB as u64);
    assert!(
        rss < BUDGET,
        "{what}: peak RSS {} MiB over {} MiB",
        rss / MIB as u64,
        BUDGET / MIB as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_padded_layout_index_costs_a_small_multiple_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    umoci(&["init", "--layout", good.to_str().unwrap()]).await;
    umoci(&["new", "--image", &format!("{}:v1", good.display())]).await;
    let padded = dir.path().join("padded");
    for entry in walk(&good) {
        let to = padded.join(entry.strip_prefix(&good).unwrap());
        if entry.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &to).unwrap();
        }
    }
    let index_path = padded.join("index.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    set_padded(&index_path, &mut doc, 4 * MIB);

    let layout = format!("oci:{}", padded.display());
    let (code, err, rss) = run_measured(&["tags", &layout]).await;
    assert_eq!(code, 0, "{err}");
    within_budget("tags of a layout with a 4 MiB index.json", rss);

    let source = format!("oci:{}:v1", good.display());
    let (code, err, rss) = run_measured(&["import", &source, &format!("{layout}:copy")]).await;
    assert_eq!(code, 0, "{err}");
    within_budget("import into a layout with a 4 MiB index.json", rss);
    let after: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    assert_eq!(
        after["x-padding"].as_array().unwrap().len(),
        doc["x-padding"].as_array().unwrap().len(),
        "the padding field is kept"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_padded_registry_index_copied_with_platform_costs_a_small_multiple() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("mem", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "app", "v1", set.to_node()).await.unwrap();
    let pusher = Pusher::for_registry(&src);
    let (media_type, bytes) = pusher.get_manifest("app", "v1").await.unwrap();
    let mut doc: Value = serde_json::from_slice(&bytes).unwrap();
    let base = serde_json::to_vec(&doc).unwrap().len();
    doc["x-padding"] = padding(4 * MIB - 64 * 1024 - base);
    let padded = common::Manifest::from_json(&media_type, &doc);
    pusher
        .push_manifest("app", "padded", &padded)
        .await
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let source = format!("{}/app:padded", src.host());
    let target = format!("oci:{}:amd64", out.path().join("l").display());
    let (code, err, rss) =
        run_measured(&["import", "--platform", "linux/amd64", &source, &target]).await;
    assert_eq!(code, 0, "{err}");
    within_budget("import --platform of a 4 MiB registry index", rss);
}

/// A layout whose `index.json` is at the entry cap (200,000) is not
/// written past it: tagging one more image is refused with a clear error
/// and `index.json` is left as it was, still readable.
#[tokio::test(flavor = "multi_thread")]
async fn no_index_json_is_written_past_the_read_cap() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    umoci(&["init", "--layout", good.to_str().unwrap()]).await;
    umoci(&["new", "--image", &format!("{}:v1", good.display())]).await;
    let full = dir.path().join("full");
    for entry in walk(&good) {
        let to = full.join(entry.strip_prefix(&good).unwrap());
        if entry.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &to).unwrap();
        }
    }
    let index_path = full.join("index.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = doc["manifests"][0].clone();
    let entries: Vec<Value> = (0..200_000)
        .map(|i| {
            let mut e = entry.clone();
            e["annotations"] =
                serde_json::json!({ "org.opencontainers.image.ref.name": format!("t{i}") });
            e
        })
        .collect();
    doc["manifests"] = Value::Array(entries);
    let before = serde_json::to_vec(&doc).unwrap();
    std::fs::write(&index_path, &before).unwrap();

    let run = common::regmirror(&[
        "import",
        &format!("oci:{}:v1", good.display()),
        &format!("oci:{}:one-more", full.display()),
    ])
    .await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("over what a layout may hold"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(&index_path).unwrap(), before);
    let run = common::regmirror(&["tags", &format!("oci:{}", full.display())]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}
