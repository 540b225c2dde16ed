//! The run-state store through the binary against real registries: an
//! immutable-tag no-op costs a tag listing and the HEADs of the other tags
//! (request counts at counting proxies), a full check after
//! `full_check_every` heals a wiped target, a second `import` of an image
//! sharing layers mounts them (the target registry's own log), `min_age`
//! holds a new digest and then promotes it, and the store survives an
//! unreadable file, a second process and `kill -9`.
//!
//! Time is moved with `REGMIRROR_TEST_CLOCK` (Unix seconds), which only
//! builds with debug assertions read (`cargo test`'s default profile); in a
//! release build the tests check that the variable is ignored instead.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Blob, FaultPlan, Format, ImageBuilder, Pusher, RegistryOptions, TestProxy, TestRegistry, push,
};

/// A fixed "now" for clocked runs.
pub(crate) const T0: u64 = 2_000_000_000;

/// True when the binary honours `REGMIRROR_TEST_CLOCK` (debug builds).
fn clock_honoured() -> bool {
    cfg!(debug_assertions)
}

/// `regmirror ARGS` with the store enabled (whatever the environment says)
/// and, when given, the test clock: (exit code, stdout, stderr).
async fn run(args: &[&str], clock: Option<u64>) -> (i32, String, String) {
    run_env(args, clock, &[]).await
}

/// [`run`] with `envs` set besides.
pub(crate) async fn run_env(
    args: &[&str],
    clock: Option<u64>,
    envs: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("REGMIRROR_NO_STATE")
        .env_remove("REGMIRROR_TEST_CLOCK")
        .stdin(std::process::Stdio::null());
    if let Some(t) = clock {
        cmd.env("REGMIRROR_TEST_CLOCK", t.to_string());
    }
    cmd.envs(envs.iter().copied());
    let out = cmd.output().await.expect("running regmirror");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `sync --output json` of `config` at `clock`: exit code, report, stderr.
pub(crate) async fn sync(config: &Path, clock: Option<u64>) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = run(
        &[
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
        ],
        clock,
    )
    .await;
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sync output is not JSON ({e}): {stdout}\n{stderr}"));
    let problems = crate::sync_run::schema_problems(&json);
    assert!(problems.is_empty(), "{problems:#?}\n{json:#}");
    (code, json, stderr)
}

/// Totals: copied, up to date, held, failed.
pub(crate) fn totals(v: &serde_json::Value) -> [u64; 4] {
    ["copied", "up_to_date", "held", "failed"].map(|k| v["totals"][k].as_u64().unwrap_or(u64::MAX))
}

/// A config file in a temp dir (its store lands beside it by default).
pub(crate) fn config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mirror.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A single-platform image with `layers` and one layer of its own.
pub(crate) fn image(own: &str, layers: &[Blob]) -> common::Image {
    let mut b = ImageBuilder::new(Format::Oci).platform("linux/amd64");
    for l in layers {
        b = b.layer(l.clone());
    }
    b.random_layer(own, 2000).build()
}

const RELEASES: [&str; 3] = ["1.0.0", "1.0.1", "1.1.0"];
const MOVING: [&str; 2] = ["latest", "edge"];

#[tokio::test(flavor = "multi_thread")]
async fn immutable_tags_make_a_no_op_per_repository_and_a_full_check_heals() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let dp = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let mut images = Vec::new();
    for (i, tag) in RELEASES.iter().chain(MOVING.iter()).enumerate() {
        let img = image(&format!("own-{i}"), &[]);
        push(&src, "team/app", tag, img.clone()).await.unwrap();
        images.push((*tag, img));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\nreferrers = false\n\
             immutable_tags = '\\d+\\.\\d+\\.\\d+'\n",
            sp.host(),
            dp.host()
        ),
    );
    let (code, first, stderr) = sync(&path, Some(T0)).await;
    assert_eq!(
        (code, totals(&first)),
        (0, [5, 0, 0, 0]),
        "{first:#}\n{stderr}"
    );
    assert!(
        dir.path().join(".regmirror-state/state.redb").is_file(),
        "the store lies beside the config"
    );

    // A no-op an hour later: the listing, and HEADs of the moving tags only.
    sp.reset();
    dp.reset();
    let (code, second, stderr) = sync(&path, Some(T0 + 3600)).await;
    assert_eq!(
        (code, totals(&second)),
        (0, [0, 5, 0, 0]),
        "{second:#}\n{stderr}"
    );
    assert_eq!(
        sp.count_matching("GET", "/tags/list$"),
        1,
        "{:?}",
        sp.requests()
    );
    assert_eq!(
        sp.count_matching("HEAD", "/manifests/"),
        MOVING.len(),
        "{:?}",
        sp.requests()
    );
    assert_eq!(
        dp.count_matching("HEAD", "/manifests/"),
        MOVING.len(),
        "{:?}",
        dp.requests()
    );
    for r in RELEASES {
        let touched = |p: &TestProxy| {
            p.requests()
                .iter()
                .filter(|(_, path)| path.ends_with(&format!("/manifests/{r}")))
                .count()
        };
        assert_eq!(
            (touched(&sp), touched(&dp)),
            (0, 0),
            "release tag {r} was requested"
        );
    }
    let source_requests = sp.requests().len();
    let target_requests = dp.requests().len();
    eprintln!(
        "immutable no-op of 5 tags (3 immutable): {source_requests} source, {target_requests} target requests"
    );
    assert!(
        source_requests <= 1 + 1 + MOVING.len(),
        "{:?}",
        sp.requests()
    );
    assert!(target_requests <= 1 + MOVING.len(), "{:?}", dp.requests());

    // The target loses everything; within full_check_every the release tags
    // are still trusted, after it (default 24h) every tag is checked and healed.
    dst.restart_wiped().await;
    let (code, healed, stderr) = sync(&path, Some(T0 + 25 * 3600)).await;
    assert_eq!(
        (code, totals(&healed)),
        (0, [5, 0, 0, 0]),
        "{healed:#}\n{stderr}"
    );
    let pusher = Pusher::for_registry(&dst);
    for (tag, img) in &images {
        let problems = common::graph_problems(&pusher, "mirror/app", tag, img.digest()).await;
        assert!(
            problems.is_empty(),
            "{tag} after the full check: {problems:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn within_full_check_every_an_immutable_tag_is_trusted_even_if_the_target_lost_it() {
    // The documented cost of immutable_tags: a target wiped behind the
    // mirror's back is healed at the next full check, not before.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(&src, "team/app", "2.0.0", image("own", &[]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{}/team/app:2.0.0\"\ntarget = \"{}/mirror/app\"\nreferrers = false\n\
             immutable_tags = '\\d+\\.\\d+\\.\\d+'\nfull_check_every = \"1h\"\n",
            src.host(),
            dst.host()
        ),
    );
    let (code, first, _) = sync(&path, Some(T0)).await;
    assert_eq!((code, totals(&first)), (0, [1, 0, 0, 0]), "{first:#}");
    dst.restart_wiped().await;
    let (code, trusted, _) = sync(&path, Some(T0 + 1800)).await;
    assert_eq!((code, totals(&trusted)), (0, [0, 1, 0, 0]), "{trusted:#}");
    let exists = Pusher::for_registry(&dst)
        .manifest_exists("mirror/app", "2.0.0")
        .await
        .unwrap();
    assert!(!exists, "nothing was requested, so nothing was healed yet");
    let (code, healed, stderr) = sync(&path, Some(T0 + 3600)).await;
    let want = if clock_honoured() {
        [1, 0, 0, 0]
    } else {
        [0, 1, 0, 0]
    };
    assert_eq!((code, totals(&healed)), (0, want), "{healed:#}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_import_of_an_image_sharing_layers_mounts_them() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let shared = [
        Blob::layer(Format::Oci, "base-1", 40_000),
        Blob::layer(Format::Oci, "base-2", 30_000),
    ];
    push(&src, "team/a", "1", image("own-a", &shared))
        .await
        .unwrap();
    push(&src, "team/b", "1", image("own-b", &shared))
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let import =
        |from: String, to: String, extra: &'static [&'static str], no_state: &'static str| {
            let state = state.path().to_str().unwrap().to_string();
            async move {
                let mut args = vec![
                    "import".to_string(),
                    from,
                    to,
                    "--output".into(),
                    "json".into(),
                    "--state-dir".into(),
                    state,
                ];
                args.extend(extra.iter().map(|s| s.to_string()));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let envs: &[(&str, &str)] = if no_state.is_empty() {
                    &[]
                } else {
                    &[("REGMIRROR_NO_STATE", no_state)]
                };
                let (code, stdout, stderr) = run_env(&args, None, envs).await;
                assert_eq!(code, 0, "{stdout}\n{stderr}");
                serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
            }
        };
    let (s, d) = (src.host(), dst.host());
    let first = import(format!("{s}/team/a:1"), format!("{d}/one/a:1"), &[], "").await;
    assert_eq!(first["totals"]["blobs_mounted"], 0, "{first:#}");
    // Without the store (--no-state, which wins over --state-dir, or
    // REGMIRROR_NO_STATE=1) a run of its own mounts nothing.
    let control = import(
        format!("{s}/team/b:1"),
        format!("{d}/control/b:1"),
        &["--no-state"],
        "",
    )
    .await;
    assert_eq!(control["totals"]["blobs_mounted"], 0, "{control:#}");
    let by_env = import(format!("{s}/team/b:1"), format!("{d}/env/b:1"), &[], "1").await;
    assert_eq!(by_env["totals"]["blobs_mounted"], 0, "{by_env:#}");
    let second = import(format!("{s}/team/b:1"), format!("{d}/two/b:1"), &[], "0").await;
    assert!(
        second["totals"]["blobs_mounted"].as_u64().unwrap() >= shared.len() as u64,
        "{second:#}"
    );
    // The target registry's own log: mount requests into two/b, and no
    // upload of a shared layer there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = dst.log();
    let mounts = log
        .lines()
        .filter(|l| l.contains("\"POST /v2/two/b/blobs/uploads/?") && l.contains("mount="))
        .count();
    assert!(
        mounts >= shared.len(),
        "mount requests into two/b: {mounts}\n{log}"
    );
    // The digest may be percent-encoded in the query: match its hex.
    let uploads = |repo: &str, b: &Blob| {
        let hex = b.digest.trim_start_matches("sha256:");
        let line = format!("\"PUT /v2/{repo}/blobs/uploads/");
        log.lines()
            .filter(|l| l.contains(&line) && l.contains(hex))
            .count()
    };
    for b in &shared {
        assert_eq!(
            uploads("control/b", b),
            1,
            "the control run uploads {}\n{log}",
            b.digest
        );
        assert_eq!(
            uploads("two/b", b),
            0,
            "layer {} uploaded instead of mounted",
            b.digest
        );
    }
    let problems = common::graph_problems(
        &Pusher::for_registry(&dst),
        "two/b",
        "1",
        second["images"][0]["source_digest"].as_str().unwrap(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn min_age_holds_a_new_digest_then_promotes_it() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let v1 = image("v1", &[]);
    push(&src, "team/app", "stable", v1.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{}/team/app:stable\"\ntarget = \"{}/mirror/app\"\nreferrers = false\nmin_age = \"1h\"\n",
            src.host(),
            dst.host()
        ),
    );
    let pusher = Pusher::for_registry(&dst);
    let (code, held, stderr) = sync(&path, Some(T0)).await;
    assert_eq!(
        (code, totals(&held)),
        (0, [0, 0, 1, 0]),
        "{held:#}\n{stderr}"
    );
    let entry = &held["images"][0];
    assert_eq!(entry["result"], "held", "{held:#}");
    if clock_honoured() {
        assert_eq!(
            entry["held"]["first_seen"], "2033-05-18T03:33:20Z",
            "{held:#}"
        );
        assert_eq!(
            entry["held"]["eligible_at"], "2033-05-18T04:33:20Z",
            "{held:#}"
        );
    }
    assert!(
        !pusher
            .manifest_exists("mirror/app", "stable")
            .await
            .unwrap()
    );

    // The text summary names the held tag and when it becomes eligible;
    // the metrics count it as held.
    let metrics = dir.path().join("metrics.prom");
    let (code, text, _) = run(
        &[
            "sync",
            "--config",
            path.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
        Some(T0 + 60),
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let metrics = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("regmirror_images_total{")
                && l.contains("result=\"held\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(text.contains("1 held by min_age"), "{text}");
    assert!(
        text.contains("team/app:stable") && text.contains("eligible at"),
        "{text}"
    );

    if !clock_honoured() {
        return;
    }
    let (code, promoted, _) = sync(&path, Some(T0 + 3600)).await;
    assert_eq!((code, totals(&promoted)), (0, [1, 0, 0, 0]), "{promoted:#}");
    assert!(
        common::graph_problems(&pusher, "mirror/app", "stable", v1.digest())
            .await
            .is_empty()
    );

    // Upstream moves the tag: the new digest waits its hour from its own
    // first sighting; the target keeps the old one meanwhile.
    let v2 = image("v2", &[]);
    push(&src, "team/app", "stable", v2.clone()).await.unwrap();
    let moved = T0 + 5000;
    for at in [moved, moved + 3599] {
        let (code, held, _) = sync(&path, Some(at)).await;
        assert_eq!(
            (code, totals(&held)),
            (0, [0, 0, 1, 0]),
            "at {at}: {held:#}"
        );
        assert_eq!(
            held["images"][0]["held"]["first_seen"], "2033-05-18T04:56:40Z",
            "{held:#}"
        );
        assert!(
            common::graph_problems(&pusher, "mirror/app", "stable", v1.digest())
                .await
                .is_empty()
        );
    }
    let (code, promoted, _) = sync(&path, Some(moved + 3600)).await;
    assert_eq!((code, totals(&promoted)), (0, [1, 0, 0, 0]), "{promoted:#}");
    assert!(
        common::graph_problems(&pusher, "mirror/app", "stable", v2.digest())
            .await
            .is_empty()
    );
}

/// A one-image mirror config of `src` to `dst` in `dir`.
fn simple_config(dir: &Path, src: &str, dst: &str, extra: &str) -> PathBuf {
    config(
        dir,
        &format!(
            "[[mirror]]\nsource = \"{src}/team/app:1.0.0\"\ntarget = \"{dst}/mirror/app\"\nreferrers = false\n\
             immutable_tags = '\\d+\\.\\d+\\.\\d+'\n{extra}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_store_is_moved_aside_and_the_run_is_correct() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let img = image("own", &[]);
    push(&src, "team/app", "1.0.0", img.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let garbage = common::image::pseudo_random_bytes("not a store", 20_000);
    std::fs::write(state.join("state.redb"), &garbage).unwrap();
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let path = simple_config(dir.path(), &sp.host(), &dst.host(), "");
    let path = config(
        dir.path(),
        &format!(
            "state_dir = \"state\"\n{}",
            std::fs::read_to_string(&path).unwrap()
        ),
    );
    let (code, report, stderr) = sync(&path, None).await;
    assert_eq!(
        (code, totals(&report)),
        (0, [1, 0, 0, 0]),
        "{report:#}\n{stderr}"
    );
    assert!(
        stderr.contains("could not be read") && stderr.contains("moved aside"),
        "{stderr}"
    );
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.redb.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the unreadable file is kept aside");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), garbage);
    assert!(
        common::graph_problems(
            &Pusher::for_registry(&dst),
            "mirror/app",
            "1.0.0",
            img.digest()
        )
        .await
        .is_empty()
    );
    // The new store works: no warning, and the immutable tag is remembered
    // (no manifest request at the source).
    sp.reset();
    let (code, again, stderr) = sync(&path, None).await;
    assert_eq!(
        sp.count_matching("HEAD", "/manifests/"),
        0,
        "{:?}",
        sp.requests()
    );
    assert_eq!(
        (code, totals(&again)),
        (0, [0, 1, 0, 0]),
        "{again:#}\n{stderr}"
    );
    assert!(!stderr.contains("run-state"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_works_without_the_store_it_cannot_lock() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let img = image("own", &[]);
    push(&src, "team/app", "1.0.0", img.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::serve::free_port();
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let path = simple_config(
        dir.path(),
        &sp.host(),
        &dst.host(),
        &format!("schedule = \"0 0 1 1 *\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    // serve holds the store beside the config for its whole life.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("REGMIRROR_NO_STATE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut daemon = cmd.spawn().unwrap();
    let pusher = Pusher::for_registry(&dst);
    let mut mirrored = false;
    for _ in 0..100 {
        if pusher
            .manifest_exists("mirror/app", "1.0.0")
            .await
            .unwrap_or(false)
        {
            mirrored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mirrored, "serve's first run mirrored the image");
    let (code, report, stderr) = sync(&path, None).await;
    assert_eq!(
        (code, totals(&report)),
        (0, [0, 1, 0, 0]),
        "{report:#}\n{stderr}"
    );
    assert!(
        stderr.contains("in use by another regmirror process"),
        "{stderr}"
    );
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    // Free again, the store holds what serve recorded: the tag is trusted.
    sp.reset();
    let (code, report, stderr) = sync(&path, None).await;
    assert_eq!(
        sp.count_matching("HEAD", "/manifests/"),
        0,
        "{:?}",
        sp.requests()
    );
    assert_eq!(
        (code, totals(&report)),
        (0, [0, 1, 0, 0]),
        "{report:#}\n{stderr}"
    );
    assert!(
        !stderr.contains("run-state"),
        "the store is free again: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_killed_mid_run_leaves_a_store_the_next_run_opens() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    // Blob uploads through a slow proxy keep the run going while earlier
    // mirrors commit their entries.
    let dp = TestProxy::start(
        &dst.base_url(),
        FaultPlan::none().always(
            "PUT",
            "/blobs/uploads/",
            common::Fault::Stall(Duration::from_millis(150)),
        ),
    )
    .await;
    let mut text = String::new();
    let mut images = Vec::new();
    for i in 0..12 {
        let img = image(
            &format!("own-{i}"),
            &[Blob::layer(Format::Oci, &format!("l-{i}"), 200_000)],
        );
        push(&src, &format!("team/app{i}"), "1.0.0", img.clone())
            .await
            .unwrap();
        text.push_str(&format!(
            "[[mirror]]\nsource = \"{}/team/app{i}:1.0.0\"\ntarget = \"{}/mirror/app{i}\"\nreferrers = false\n\
             immutable_tags = '\\d+\\.\\d+\\.\\d+'\n\n",
            src.host(),
            dp.host()
        ));
        images.push(img);
    }
    text.insert_str(0, "[defaults]\nconcurrency = 1\n\n");
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &text);
    let store = dir.path().join(".regmirror-state/state.redb");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["sync", "--config", path.to_str().unwrap()])
        .env_remove("REGMIRROR_NO_STATE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Kill it once the store has grown by a commit, while copies go on.
    let initial = loop {
        if let Ok(m) = std::fs::metadata(&store) {
            break m.modified().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for _ in 0..3000 {
        if std::fs::metadata(&store)
            .map(|m| m.modified().unwrap() != initial)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = child.id().unwrap();
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let status = child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "killed mid-run"
    );
    let (code, report, stderr) = sync(&path, None).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(totals(&report)[3], 0, "{report:#}");
    assert!(store.is_file());
    let pusher = Pusher::for_registry(&dst);
    for (i, img) in images.iter().enumerate() {
        let problems =
            common::graph_problems(&pusher, &format!("mirror/app{i}"), "1.0.0", img.digest()).await;
        assert!(problems.is_empty(), "app{i}: {problems:?}");
    }
    // The store opened (or, had the kill broken it, was rebuilt): either
    // way the next run trusts what the last one recorded.
    dp.reset();
    let (code, again, stderr) = sync(&path, None).await;
    assert_eq!(
        dp.count_matching("HEAD", "/manifests/"),
        0,
        "{:?}",
        dp.requests()
    );
    assert_eq!(
        (code, totals(&again)),
        (0, [0, 12, 0, 0]),
        "{again:#}\n{stderr}"
    );
    assert!(!stderr.contains("in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_store_keys_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "min_age = \"1 week\"",
            "mirror[1].min_age",
            "not a duration",
        ),
        ("min_age = \"31d\"", "mirror[1].min_age", "longer than 30d"),
        (
            "full_check_every = \"0s\"",
            "mirror[1].full_check_every",
            "longer than 0s",
        ),
        (
            "immutable_tags = '(v'",
            "mirror[1].immutable_tags",
            "invalid regular expression",
        ),
    ];
    for (line, key, words) in cases {
        let path = config(
            dir.path(),
            &format!(
                "[[mirror]]\nsource = \"127.0.0.1:1/a:1.0.0\"\ntarget = \"127.0.0.1:2/a\"\n{line}\n"
            ),
        );
        let (code, stdout, stderr) = run(&["sync", "--config", path.to_str().unwrap()], None).await;
        assert_eq!(code, 2, "{line}: {stdout}\n{stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(words),
            "{line}: {stderr}"
        );
    }
}
