//! `regmirror serve` as a process: a seconds-field schedule that picks up a
//! new upstream tag, `/metrics` values that move, `/healthz` and `/readyz`,
//! SIGHUP with a bad config (the old one keeps running) and with a good one,
//! and SIGTERM draining a copy in flight.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::serve::{Daemon, free_port, sample};
use common::{
    Fault, FaultPlan, Format, ImageSet, Node, Pusher, RegistryOptions, TestProxy, TestRegistry,
    push,
};

/// A source holding `team/app:1.0` and `team/tool:1.0`, and an empty target.
async fn app_and_tool() -> (TestRegistry, TestRegistry) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    for repo in ["team/app", "team/tool"] {
        push(
            &src,
            repo,
            "1.0",
            Node::Image(ImageSet::image(repo, "linux/amd64", Format::Oci)),
        )
        .await
        .unwrap();
    }
    (src, dst)
}

async fn exists(reg: &TestRegistry, repo: &str, tag: &str) -> bool {
    Pusher::for_registry(reg)
        .manifest_exists(repo, tag)
        .await
        .unwrap_or(false)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_schedule_reloads_on_sighup_and_exits_on_sigterm() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/app",
        "v1",
        ImageSet::multi_arch(
            "app/v1",
            &["linux/amd64", "linux/arm64"],
            false,
            Format::Oci,
        )
        .to_node(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 30\n\n\
         [[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\nschedule = \"*/2 * * * * *\"\n",
        src.host(),
        dst.host()
    );
    std::fs::write(&config_path, &base).unwrap();
    let mut d = Daemon::start(&config_path, dir.path(), port);

    d.wait_for("/healthz", Duration::from_secs(30), async || {
        d.get("/healthz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    d.wait_for("every first run", Duration::from_secs(30), async || {
        d.get("/metrics")
            .await
            .is_some_and(|(s, m)| s == 200 && first_runs_complete(&m))
    })
    .await;
    assert!(
        exists(&dst, "mirror/app", "v1").await,
        "first run copied v1"
    );

    let m = d.metrics().await;
    let app = [("mirror", "app")];
    let runs1 = sample(
        &m,
        "regmirror_sync_runs_total",
        &[("mirror", "app"), ("result", "success")],
    )
    .unwrap_or(0.0);
    assert!(runs1 >= 1.0, "{m}");
    assert_eq!(
        sample(
            &m,
            "regmirror_images_total",
            &[("mirror", "app"), ("result", "copied")]
        ),
        Some(1.0),
        "{m}"
    );
    let next =
        sample(&m, "regmirror_mirror_next_run_timestamp_seconds", &app).expect("next run gauge");
    assert!(
        next > unix_now() - 5.0 && next < unix_now() + 5.0,
        "next run {next}"
    );
    assert_eq!(
        sample(&m, "regmirror_mirror_schedule_interval_seconds", &app),
        Some(2.0),
        "{m}"
    );
    assert!(
        sample(&m, "regmirror_mirror_last_success_timestamp_seconds", &app).unwrap()
            > unix_now() - 60.0
    );
    assert_eq!(
        sample(&m, "regmirror_mirror_consecutive_failures", &app),
        Some(0.0)
    );
    assert!(m.contains("regmirror_copies_in_flight 0"), "{m}");
    assert!(
        m.contains("regmirror_image_copy_duration_seconds_count{mirror=\"app\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("process_resident_memory_bytes"),
        "process metrics: {m}"
    );

    // A new upstream tag is picked up by a scheduled run.
    push(
        &src,
        "team/app",
        "v2",
        ImageSet::multi_arch("app/v2", &["linux/amd64"], false, Format::Oci).to_node(),
    )
    .await
    .unwrap();
    d.wait_for("v2 at the target", Duration::from_secs(30), async || {
        exists(&dst, "mirror/app", "v2").await
    })
    .await;
    let m = d.metrics().await;
    let runs2 = sample(
        &m,
        "regmirror_sync_runs_total",
        &[("mirror", "app"), ("result", "success")],
    )
    .unwrap();
    assert!(runs2 > runs1, "runs moved: {runs1} -> {runs2}");
    assert_eq!(
        sample(
            &m,
            "regmirror_images_total",
            &[("mirror", "app"), ("result", "copied")]
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "regmirror_images_total",
            &[("mirror", "app"), ("result", "skipped")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &m,
            "regmirror_registry_responses_total",
            &[("method", "HEAD"), ("status", "2xx")]
        )
        .unwrap()
            >= 2.0
    );

    // SIGHUP with a bad config: reported, the old config keeps running.
    std::fs::write(&config_path, format!("{base}bogus_key = 1\n")).unwrap();
    d.signal("HUP");
    d.wait_for("the reload error", Duration::from_secs(10), async || {
        d.log().contains("reload rejected")
    })
    .await;
    assert!(
        d.log().contains("bogus_key"),
        "the error names the key:\n{}",
        d.log()
    );
    let before = sample(
        &d.metrics().await,
        "regmirror_sync_runs_total",
        &[("mirror", "app"), ("result", "success")],
    )
    .unwrap();
    d.wait_for(
        "runs after a bad reload",
        Duration::from_secs(15),
        async || {
            let m = d.metrics().await;
            sample(
                &m,
                "regmirror_sync_runs_total",
                &[("mirror", "app"), ("result", "success")],
            )
            .unwrap()
                >= before + 2.0
        },
    )
    .await;
    assert_eq!(d.get("/readyz").await.map(|r| r.0), Some(200));

    // SIGHUP with a good config: a new mirror runs.
    push(
        &src,
        "team/tool",
        "1.0",
        Node::Image(ImageSet::image("tool", "linux/amd64", Format::Docker)),
    )
    .await
    .unwrap();
    std::fs::write(
        &config_path,
        format!(
            "{base}\n[[mirror]]\nname = \"tool\"\nsource = \"{}/team/tool:1.0\"\ntarget = \"{}/mirror/tool\"\nschedule = \"0 0 1 1 *\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for(
        "the new mirror's copy",
        Duration::from_secs(30),
        async || exists(&dst, "mirror/tool", "1.0").await,
    )
    .await;
    assert!(d.log().contains("config reloaded"), "{}", d.log());
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "regmirror_images_total",
            &[("mirror", "tool"), ("result", "copied")]
        ),
        Some(1.0),
        "{m}"
    );

    // SIGTERM: exit 0.
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(40)).await, 0, "{}", d.log());
    assert!(d.log().contains("every run finished"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_copy_in_flight_finish() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    // Every blob GET from the source waits 4 s: the first run is still copying
    // when the next slots come (skipped: the schedule fires every second) and
    // when SIGTERM comes.
    let slow = TestProxy::start(
        &src.base_url(),
        FaultPlan::none().always(
            "GET",
            "/blobs/sha256:",
            Fault::Stall(Duration::from_secs(4)),
        ),
    )
    .await;
    let image = ImageSet::image("slow", "linux/amd64", Format::Oci);
    let digest = image.manifest.digest.clone();
    push(&src, "team/slow", "v1", Node::Image(image))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 60\n\n\
             [[mirror]]\nname = \"slow\"\nsource = \"{}/team/slow:v1\"\ntarget = \"{}/mirror/slow\"\nschedule = \"* * * * * *\"\n",
            slow.host(),
            dst.host()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&config_path, dir.path(), port);
    d.wait_for(
        "a blob GET in flight",
        Duration::from_secs(30),
        async || slow.count_matching("GET", "/blobs/sha256:") >= 1,
    )
    .await;
    // Ready while the first run is going (readiness waits for the config
    // and the listener only); the run shows on /metrics.
    let (status, _) = d.get("/readyz").await.expect("readyz answers");
    assert_eq!(status, 200);
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "regmirror_first_runs_complete", &[]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "regmirror_mirror_running", &[("mirror", "slow")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "regmirror_copies_in_flight", &[]),
        Some(1.0),
        "{m}"
    );
    d.wait_for("a skipped slot", Duration::from_secs(10), async || {
        let m = d.metrics().await;
        sample(&m, "regmirror_runs_skipped_total", &[("mirror", "slow")]).unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(d.log().contains("previous run still going"), "{}", d.log());
    assert!(
        !exists(&dst, "mirror/slow", "v1").await,
        "still copying when SIGTERM is sent"
    );

    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(60)).await, 0, "{}", d.log());
    let log = d.log();
    assert!(log.contains("every run finished"), "{log}");
    let (_, bytes) = Pusher::for_registry(&dst)
        .get_manifest("mirror/slow", "v1")
        .await
        .expect("the copy finished");
    assert_eq!(common::sha256_digest(&bytes), digest);
}

/// The library entry point, driven without signals: reloads come from a
/// channel, shutdown from a oneshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_run_is_driven_by_a_reload_stream_and_a_shutdown_future() {
    use regmirror::serve::Settings;
    use regmirror::sync::Config;

    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/a",
        "1",
        Node::Image(ImageSet::image("a", "linux/amd64", Format::Oci)),
    )
    .await
    .unwrap();
    push(
        &src,
        "team/b",
        "1",
        Node::Image(ImageSet::image("b", "linux/amd64", Format::Oci)),
    )
    .await
    .unwrap();
    let port = free_port();
    let text = |mirrors: &[&str]| {
        let mut t = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
        for m in mirrors {
            t.push_str(&format!(
                "\n[[mirror]]\nsource = \"{}/team/{m}:1\"\ntarget = \"{}/mirror/{m}\"\nschedule = \"0 0 1 1 *\"\n",
                src.host(),
                dst.host()
            ));
        }
        t
    };
    let settings = |t: &str| {
        let config = Config::parse(Path::new("lib.toml"), t).unwrap();
        Settings {
            client_options: regmirror::registry::ClientOptions::default(),
            config,
            sharding: None,
        }
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel::<Result<Settings, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reloads = futures_util::stream::unfold(reload_rx, |mut rx| async move {
        rx.recv().await.map(|s| (s, rx))
    });
    let daemon = tokio::spawn(regmirror::serve::run(
        settings(&text(&["a"])),
        reloads,
        async move {
            let _ = stop_rx.await;
        },
    ));

    let http = common::http_client(None);
    let ready = async || {
        let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        else {
            return false;
        };
        first_runs_complete(&r.text().await.unwrap_or_default())
    };
    let start = Instant::now();
    while !ready().await {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exists(&dst, "mirror/a", "1").await);

    // A rejected reload changes nothing; an accepted one runs the new mirror.
    reload_tx
        .send(Err("config file lib.toml: broken on purpose".to_string()))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!daemon.is_finished());
    assert!(!exists(&dst, "mirror/b", "1").await);
    reload_tx.send(Ok(settings(&text(&["a", "b"])))).unwrap();
    let start = Instant::now();
    while !exists(&dst, "mirror/b", "1").await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the reloaded mirror never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("run returns after shutdown");
    result.expect("task").expect("run ends cleanly");
    assert!(
        http.get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "the endpoint is closed after run returns"
    );
}

/// With `--watch-config`, writing the file reloads it without a signal; a
/// bad edit is reported and the running config stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_when_the_file_changes() {
    let (src, dst) = app_and_tool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    let mirror = |name: &str| {
        format!(
            "\n[[mirror]]\nname = \"{name}\"\nsource = \"{}/team/{name}:1.0\"\ntarget = \"{}/mirror/{name}\"\nschedule = \"0 0 1 1 *\"\n",
            src.host(),
            dst.host()
        )
    };
    let base = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{}", mirror("app"));
    std::fs::write(&config_path, &base).unwrap();
    let mut d = Daemon::start_with(
        &config_path,
        dir.path(),
        port,
        &["--watch-config", "--watch-interval", "1"],
    );
    d.wait_for("every first run", Duration::from_secs(30), async || {
        d.get("/metrics")
            .await
            .is_some_and(|(s, m)| s == 200 && first_runs_complete(&m))
    })
    .await;
    assert!(exists(&dst, "mirror/app", "1.0").await);
    assert!(!exists(&dst, "mirror/tool", "1.0").await);
    let m = d.metrics().await;
    let good_hash = config_hash(&m).expect("regmirror_config_info at start");
    assert_eq!(good_hash, sha256_12(base.as_bytes()), "{m}");
    assert_eq!(
        sample(&m, "regmirror_config_last_reload_successful", &[]),
        Some(1.0),
        "{m}"
    );
    let accepted_at = sample(
        &m,
        "regmirror_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .expect("accepted timestamp");
    assert!(accepted_at > 1.0e9, "{m}");
    assert!(
        m.lines()
            .any(|l| l.starts_with("regmirror_build_info{version=\"")),
        "{m}"
    );
    assert_eq!(
        sample(&m, "regmirror_mirror_running", &[("mirror", "app")]),
        Some(0.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "regmirror_mirror_last_attempt_timestamp_seconds",
            &[("mirror", "app")]
        )
        .is_some_and(|t| t >= accepted_at),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "regmirror_mirror_last_run_duration_seconds",
            &[("mirror", "app")]
        )
        .is_some_and(|t| t >= 0.0),
        "{m}"
    );

    // A bad edit: reported, and the old config keeps running.
    std::fs::write(&config_path, format!("{base}\n[[mirror]]\nsource = 42\n")).unwrap();
    d.wait_for("the rejected reload", Duration::from_secs(15), async || {
        d.log().contains("mirror[2].source")
    })
    .await;
    assert_eq!(d.get("/readyz").await.map(|r| r.0), Some(200));
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "regmirror_config_last_reload_successful", &[]),
        Some(0.0),
        "a rejected reload shows: {m}"
    );
    assert_eq!(config_hash(&m).as_deref(), Some(good_hash.as_str()), "{m}");
    assert_eq!(
        sample(
            &m,
            "regmirror_config_last_reload_success_timestamp_seconds",
            &[]
        ),
        Some(accepted_at),
        "{m}"
    );
    assert!(
        sample(&m, "regmirror_config_last_reload_timestamp_seconds", &[])
            .is_some_and(|t| t >= accepted_at),
        "{m}"
    );

    // A good edit: the new mirror runs.
    std::fs::write(&config_path, format!("{base}{}", mirror("tool"))).unwrap();
    d.wait_for(
        "the new mirror's copy",
        Duration::from_secs(30),
        async || exists(&dst, "mirror/tool", "1.0").await,
    )
    .await;
    assert!(d.log().contains("config file changed"), "{}", d.log());
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "regmirror_config_last_reload_successful", &[]),
        Some(1.0),
        "{m}"
    );
    assert_ne!(config_hash(&m), Some(good_hash), "the new file's hash: {m}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 0, "{}", d.log());
}

/// The target loses its storage while `serve` runs (stopped, data deleted,
/// started again on the same port): the next scheduled run copies the image
/// again, whole and pullable, with no restart of regmirror. What a run
/// remembers lives for that run only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_target_is_healed_by_the_next_scheduled_run() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch(
        "heal/app",
        &["linux/amd64", "linux/arm64"],
        true,
        Format::Oci,
    );
    push(&src, "team/app", "1.0", index.to_node())
        .await
        .unwrap();
    push(&src, "team/app", "latest", index.to_node())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\nschedule = \"*/2 * * * * *\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&config_path, dir.path(), port);
    d.wait_for("every first run", Duration::from_secs(30), async || {
        d.get("/metrics")
            .await
            .is_some_and(|(s, m)| s == 200 && first_runs_complete(&m))
    })
    .await;
    let pusher = Pusher::for_registry(&dst);
    for tag in ["1.0", "latest"] {
        let problems = common::graph_problems(&pusher, "mirror/app", tag, index.digest()).await;
        assert!(problems.is_empty(), "first run: {problems:?}");
    }
    let pid = d.pid();

    for wipe in 1..=2 {
        dst.restart_wiped().await;
        assert!(
            !exists(&dst, "mirror/app", "1.0").await,
            "wipe {wipe}: the target lost the image"
        );
        d.wait_for(
            "the image back at the target",
            Duration::from_secs(30),
            async || {
                exists(&dst, "mirror/app", "1.0").await
                    && exists(&dst, "mirror/app", "latest").await
            },
        )
        .await;
        let pusher = Pusher::for_registry(&dst);
        for tag in ["1.0", "latest"] {
            let problems = common::graph_problems(&pusher, "mirror/app", tag, index.digest()).await;
            assert!(problems.is_empty(), "wipe {wipe}, {tag}: {problems:?}");
            let got = common::skopeo_raw_digest(&dst, &format!("mirror/app:{tag}"))
                .await
                .unwrap();
            assert_eq!(got, index.digest(), "wipe {wipe}: skopeo reads {tag}");
        }
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "regmirror kept running"
        );
        assert_eq!(d.pid(), pid, "same regmirror process");
    }
    // The runs after the heal succeed again.
    d.wait_for(
        "a successful run after the heal",
        Duration::from_secs(20),
        async || {
            let m = d.metrics().await;
            sample(
                &m,
                "regmirror_mirror_consecutive_failures",
                &[("mirror", "app")],
            ) == Some(0.0)
        },
    )
    .await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 0, "{}", d.log());
}

/// A reload to a file without mirrors is refused (an emptied file must not
/// stop every mirror) unless it says `allow_empty = true`; a mirror removed
/// by a reload loses every metric series it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_reloads_need_consent_and_removed_mirrors_lose_their_series() {
    let (src, dst) = app_and_tool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    let mirror = |name: &str, schedule: &str| {
        format!(
            "\n[[mirror]]\nname = \"{name}\"\nsource = \"{}/team/{name}:1.0\"\ntarget = \"{}/mirror/{name}\"\nschedule = \"{schedule}\"\n",
            src.host(),
            dst.host()
        )
    };
    std::fs::write(
        &config_path,
        format!(
            "{server}{}{}",
            mirror("app", "*/2 * * * * *"),
            mirror("tool", "0 0 1 1 *")
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&config_path, dir.path(), port);
    d.wait_for("every first run", Duration::from_secs(30), async || {
        d.get("/metrics")
            .await
            .is_some_and(|(s, m)| s == 200 && first_runs_complete(&m))
    })
    .await;
    let series = |m: &str, name: &str| {
        m.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("mirror=\"{name}\"")))
            .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = series(&d.metrics().await, "tool");
    for family in [
        "regmirror_sync_runs_total",
        "regmirror_images_total",
        "regmirror_mirror_last_success_timestamp_seconds",
        "regmirror_mirror_consecutive_failures",
        "regmirror_mirror_next_run_timestamp_seconds",
    ] {
        assert!(before.contains(family), "{family} in {before:?}");
    }

    // Remove "tool": every one of its series goes.
    std::fs::write(
        &config_path,
        format!("{server}{}", mirror("app", "*/2 * * * * *")),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the reload", Duration::from_secs(10), async || {
        d.log().contains("config reloaded")
    })
    .await;
    d.wait_for("tool's series gone", Duration::from_secs(10), async || {
        series(&d.metrics().await, "tool").is_empty()
    })
    .await;
    assert!(!series(&d.metrics().await, "app").is_empty());

    // An emptied file: refused, "app" keeps running.
    std::fs::write(&config_path, &server).unwrap();
    d.signal("HUP");
    d.wait_for("the refused reload", Duration::from_secs(10), async || {
        let log = d.log();
        log.contains("reload rejected") && log.contains("allow_empty = true")
    })
    .await;
    let runs = |m: &str| {
        sample(
            m,
            "regmirror_sync_runs_total",
            &[("mirror", "app"), ("result", "success")],
        )
        .unwrap_or(0.0)
    };
    let at_refusal = runs(&d.metrics().await);
    d.wait_for("app still running", Duration::from_secs(15), async || {
        runs(&d.metrics().await) >= at_refusal + 2.0
    })
    .await;

    // Consent: the empty config is taken, "app" stops and its series go.
    std::fs::write(&config_path, format!("allow_empty = true\n{server}")).unwrap();
    d.signal("HUP");
    d.wait_for("app's series gone", Duration::from_secs(15), async || {
        series(&d.metrics().await, "app").is_empty()
    })
    .await;
    assert_eq!(d.log().matches("config reloaded").count(), 2, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 0, "{}", d.log());
}

/// True when `/metrics` text `m` says every first run has finished
/// (`/readyz` does not wait for them).
fn first_runs_complete(m: &str) -> bool {
    m.lines().any(|l| l == "regmirror_first_runs_complete 1")
}

/// The `hash` label of `regmirror_config_info` in `/metrics` text `m`.
fn config_hash(m: &str) -> Option<String> {
    let line = m
        .lines()
        .find(|l| l.starts_with("regmirror_config_info{hash=\""))?;
    Some(line.split('"').nth(1)?.to_string())
}

/// First 12 hex digits of the SHA-256 of `bytes`.
fn sha256_12(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))[..12].to_string()
}

/// One flooding client from 127.0.0.1: connects, then stays idle or (with
/// `slow`) sends a request's headers one byte a second; with `reconnect`,
/// connects again whenever the daemon closes it.
async fn flood_client(port: u16, slow: bool, reconnect: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut buf = [0u8; 64];
        let mut i = 0;
        loop {
            if slow {
                let byte = &head[i % head.len()..i % head.len() + 1];
                if s.write_all(byte).await.is_err() {
                    break;
                }
                i += 1;
            }
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        if !reconnect {
            // Keep the closed socket half-open until the test ends.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count` fresh-connection probes of `/healthz` and `/readyz` from
/// `from`, each given 2 s: how many were answered 200.
async fn probes(port: u16, from: std::net::IpAddr, count: usize) -> usize {
    let http = reqwest::Client::builder()
        .local_address(from)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut ok = 0;
    for i in 0..count {
        let path = if i % 2 == 0 { "/healthz" } else { "/readyz" };
        let url = format!("http://127.0.0.1:{port}{path}");
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_answer_under_a_flood_of_idle_and_slow_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nname = \"idle\"\nsource = \"127.0.0.1:1/team/app:1.0\"\n\
             target = \"127.0.0.1:1/mirror/app:1.0\"\nschedule = \"0 0 1 1 *\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&config_path, dir.path(), port);
    d.wait_for("/healthz", Duration::from_secs(30), async || {
        matches!(d.get("/healthz").await, Some((200, _)))
    })
    .await;

    // 64 idle and 64 slow-header clients, all from the probes' own address.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..128 {
        flood.spawn(flood_client(port, i % 2 == 1, false));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let answered = probes(port, [127, 0, 0, 1].into(), 30).await;
    assert_eq!(
        answered,
        30,
        "probes answered under a standing flood; log:\n{}",
        d.log()
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    // The same 128 clients reconnecting whenever they are closed; the probes
    // come from another address, as the kubelet's do.
    flood.abort_all();
    for i in 0..128 {
        flood.spawn(flood_client(port, i % 2 == 1, true));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let answered = probes(port, [127, 0, 0, 2].into(), 30).await;
    assert_eq!(
        answered,
        30,
        "probes answered under a reconnecting flood; log:\n{}",
        d.log()
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let m = d.metrics().await;
    assert!(
        sample(&m, "regmirror_http_connections_rejected_total", &[]).unwrap_or(0.0) >= 64.0,
        "{m}"
    );
    flood.abort_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_failing_run_after_run_is_quarantined_and_the_mirror_recovers() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/app",
        "good",
        ImageSet::multi_arch("quarantine", &["linux/amd64"], false, Format::Oci).to_node(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    // `gone` is named but never pushed: not found in every run.
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntags = [\"good\", \"gone\"]\n\
             target = \"{}/mirror/app\"\nschedule = \"* * * * * *\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let d = Daemon::start(&config_path, dir.path(), port);
    let quarantined = |m: &str| sample(m, "regmirror_quarantined_tags", &[("mirror", "app")]);
    // Tolerates a lost answer (a connection closed at its age limit).
    let metrics = async || d.get("/metrics").await.map(|(_, m)| m).unwrap_or_default();
    d.wait_for(
        "the tag in quarantine",
        Duration::from_secs(60),
        async || quarantined(&metrics().await) == Some(1.0),
    )
    .await;
    // The next run skips it: a success, which resets the failure count.
    d.wait_for("a successful run", Duration::from_secs(30), async || {
        let m = metrics().await;
        sample(
            &m,
            "regmirror_mirror_consecutive_failures",
            &[("mirror", "app")],
        ) == Some(0.0)
            && sample(
                &m,
                "regmirror_sync_runs_total",
                &[("mirror", "app"), ("result", "success")],
            )
            .unwrap_or(0.0)
                >= 1.0
    })
    .await;
    assert!(
        d.log().contains("image in quarantine: skipped by this run"),
        "{}",
        d.log()
    );
    // Tries of `gone` thin out: over the next 8 s (8 or more runs), at most
    // 2 tries (backoffs of 1, 2 and 4 runs) where 8 runs would each try.
    let tries = || src.access_log_count("HEAD", "/v2/team/app/manifests/gone");
    let before = tries();
    assert!(
        before >= 3,
        "the source was asked for gone in the failed runs: {before}"
    );
    let runs = |m: &str| {
        ["success", "failed", "partial"]
            .iter()
            .filter_map(|r| {
                sample(
                    m,
                    "regmirror_sync_runs_total",
                    &[("mirror", "app"), ("result", r)],
                )
            })
            .sum::<f64>()
    };
    let runs_before = runs(&metrics().await);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let runs_after = runs(&metrics().await);
    let tried = tries() - before;
    assert!(
        runs_after - runs_before >= 5.0,
        "runs: {runs_before} -> {runs_after}"
    );
    assert!(
        tried <= 3,
        "gone tried {tried} times in {} runs",
        runs_after - runs_before
    );
    assert!(exists(&dst, "mirror/app", "good").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_last_good_runs_the_last_accepted_config_when_the_new_one_is_invalid() {
    let (src, dst) = app_and_tool().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let port = free_port();
    let config_path = dir.path().join("mirror.toml");
    let good = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[mirror]]\nname = \"app\"\nsource = \"{}/team/app:1.0\"\ntarget = \"{}/mirror/app\"\n",
        src.host(),
        dst.host()
    );
    std::fs::write(&config_path, &good).unwrap();
    let keep = ["--keep-last-good", state.to_str().unwrap()];
    let mut d = Daemon::start_with(&config_path, dir.path(), port, &keep);
    d.wait_for("the first run", Duration::from_secs(30), async || {
        exists(&dst, "mirror/app", "1.0").await
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(state.join("last-good.toml")).unwrap(),
        good
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 0);

    // The pod restarts with a broken config: the last good one runs.
    std::fs::write(&config_path, "[[mirror]]\nname = \"app\"\nsource = 42\n").unwrap();
    let mut d = Daemon::start_with(&config_path, dir.path(), port, &keep);
    d.wait_for("readiness on the last good config", Duration::from_secs(30), async || {
        matches!(d.get("/readyz").await, Some((200, body)) if body.contains("running the last good config"))
    })
    .await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "regmirror_config_last_reload_successful", &[]),
        Some(0.0),
        "{m}"
    );
    d.wait_for(
        "a run of the last good config",
        Duration::from_secs(30),
        async || {
            let m = d.get("/metrics").await.map(|(_, m)| m).unwrap_or_default();
            sample(
                &m,
                "regmirror_sync_runs_total",
                &[("mirror", "app"), ("result", "success")],
            ) == Some(1.0)
        },
    )
    .await;
    assert!(
        d.log().contains("running the last good config"),
        "{}",
        d.log()
    );

    // A fixed config is accepted by a reload and clears the report.
    std::fs::write(&config_path, &good).unwrap();
    d.signal("HUP");
    d.wait_for(
        "the fixed config",
        Duration::from_secs(30),
        async || matches!(d.get("/readyz").await, Some((200, body)) if !body.contains("last good")),
    )
    .await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "regmirror_config_last_reload_successful", &[]),
        Some(1.0),
        "{m}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 0);

    // Without the flag, the broken config still stops the start (exit 2).
    std::fs::write(&config_path, "[[mirror]]\nname = \"app\"\nsource = 42\n").unwrap();
    let mut d = Daemon::start(&config_path, dir.path(), port);
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 2);
}
