//! Config conveniences through the binary: schedule macros and `interval`
//! (in `check` and in `serve`'s metrics), `--concurrency`, `REGMIRROR_CONFIG`,
//! "did you mean" for a mistyped key, the single-quote hint for a regex in
//! double quotes, the warning for a single image landing in a one-segment
//! target repository, and `check` listing every problem it finds.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use common::serve::{Daemon, free_port, sample};
use common::{
    FakeServer, Format, ImageSet, Node, Pusher, RegistryOptions, TestRegistry, push,
    regmirror_isolated,
};

/// Write `text` as `mirror.toml` in `dir`; its path.
fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("mirror.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The `next:` times `check` printed for the mirror called `name`.
fn next_runs(stdout: &str, name: &str) -> Vec<chrono::DateTime<chrono::FixedOffset>> {
    stdout
        .lines()
        .skip_while(|l| *l != format!("mirror {name}"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.trim().strip_prefix("next:"))
        .map(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_macros_and_intervals_and_prints_their_next_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        "[defaults]\ninterval = \"12h\"\n\n\
         [[mirror]]\nname = \"daily\"\nsource = \"ghcr.io/org/a:1\"\ntarget = \"127.0.0.1:5999/a\"\nschedule = \"@daily\"\n\n\
         [[mirror]]\nname = \"midnight\"\nsource = \"ghcr.io/org/b:1\"\ntarget = \"127.0.0.1:5999/b\"\nschedule = \"@midnight\"\n\n\
         [[mirror]]\nname = \"every\"\nsource = \"ghcr.io/org/c:1\"\ntarget = \"127.0.0.1:5999/c\"\ninterval = \"1h30m\"\n\n\
         [[mirror]]\nname = \"inherits\"\nsource = \"ghcr.io/org/d:1\"\ntarget = \"127.0.0.1:5999/d\"\n",
    );
    let run = regmirror_isolated(&["check", "--config", &cfg, "--no-credentials"], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("schedule:  @daily (UTC)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("schedule:  every 1h30m (the first run at start)"),
        "{}",
        run.stdout
    );
    for name in ["daily", "midnight"] {
        let next = next_runs(&run.stdout, name);
        assert_eq!(next.len(), 3, "{name}: {}", run.stdout);
        for t in &next {
            assert_eq!(t.format("%H:%M:%S").to_string(), "00:00:00", "{name}");
        }
        assert_eq!((next[1] - next[0]).num_hours(), 24, "{name}");
    }
    for (name, secs) in [("every", 5400), ("inherits", 43_200)] {
        let next = next_runs(&run.stdout, name);
        assert_eq!(next.len(), 3, "{name}: {}", run.stdout);
        assert_eq!((next[1] - next[0]).num_seconds(), secs, "{name}");
        assert_eq!((next[2] - next[1]).num_seconds(), secs, "{name}");
        let ahead = (next[0].with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        assert!(ahead > secs - 60 && ahead <= secs, "{name}: {ahead}");
    }

    // Both keys in one table, an unknown macro, a bad interval: exit 2, each named.
    for (table, key, needle) in [
        (
            "schedule = \"@daily\"\ninterval = \"1h\"\n",
            "mirror[1].interval",
            "not both",
        ),
        (
            "schedule = \"@fortnightly\"\n",
            "mirror[1].schedule",
            "not a known macro",
        ),
        (
            "interval = \"12\"\n",
            "mirror[1].interval",
            "without a unit",
        ),
    ] {
        let cfg = write_config(
            &dir,
            &format!(
                "[[mirror]]\nsource = \"ghcr.io/org/a:1\"\ntarget = \"127.0.0.1:5999/a\"\n{table}"
            ),
        );
        let run = regmirror_isolated(&["check", "--config", &cfg], &[]).await;
        assert_eq!(run.code, 2, "{table}: {}", run.stderr);
        assert!(run.stderr.contains(key), "{table}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{table}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_the_interval_and_next_run_of_an_interval_mirror() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/app",
        "1.0",
        Node::Image(ImageSet::image("interval", "linux/amd64", Format::Oci)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{}/team/app:1.0\"\ntarget = \"{}/mirror/app\"\ninterval = \"2h\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, dir.path(), port);
    let app = [("mirror", "app")];
    // The first run happens at start, then the next slot is one interval on.
    d.wait_for("the first run", Duration::from_secs(60), async || {
        d.get("/metrics").await.is_some_and(|(s, m)| {
            s == 200
                && sample(
                    &m,
                    "regmirror_sync_runs_total",
                    &[("mirror", "app"), ("result", "success")],
                )
                .is_some_and(|n| n >= 1.0)
        })
    })
    .await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "regmirror_mirror_schedule_interval_seconds", &app),
        Some(7200.0),
        "{m}"
    );
    let next = sample(&m, "regmirror_mirror_next_run_timestamp_seconds", &app).expect("next run");
    let ahead = next - chrono::Utc::now().timestamp() as f64;
    assert!(
        ahead > 7200.0 - 120.0 && ahead <= 7200.0,
        "next run in {ahead} s"
    );
    assert!(
        Pusher::for_registry(&dst)
            .manifest_exists("mirror/app", "1.0")
            .await
            .unwrap(),
        "the first run copied the image"
    );
}

/// A registry whose `/v2/` answers at once and whose every other request
/// answers 404 after 400 ms, recording the most requests in flight at once
/// and how many came.
/// A real registry cannot be made slow on purpose, and the number of
/// requests in flight is what `--concurrency` bounds.
async fn slow_registry() -> (FakeServer, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let total = Arc::new(AtomicUsize::new(0));
    let (m, t) = (most.clone(), total.clone());
    let router = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .fallback(move || {
            let (now, most, total) = (now.clone(), m.clone(), t.clone());
            async move {
                total.fetch_add(1, Ordering::SeqCst);
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(400)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                (
                    StatusCode::NOT_FOUND,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
                )
                    .into_response()
            }
        });
    (FakeServer::start(router).await, most, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_flag_overrides_the_config() {
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    for (flag, bound) in [(Some("1"), 1), (None, 4)] {
        let (slow, most, _) = slow_registry().await;
        let cfg = write_config(
            &dir,
            &format!(
                "[defaults]\nconcurrency = 4\n\n[[mirror]]\nsource = \"{}/team/app\"\n\
                 tags = [\"a\", \"b\", \"c\", \"d\"]\ntarget = \"{}/mirror/app\"\n",
                slow.host(),
                dst.host()
            ),
        );
        let mut args = vec!["sync", "--config", &cfg];
        if let Some(n) = flag {
            args.extend(["--concurrency", n]);
        }
        let run = regmirror_isolated(&args, &[]).await;
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        let most = most.load(Ordering::SeqCst);
        if bound == 1 {
            assert_eq!(most, 1, "--concurrency 1 let {most} requests run at once");
        } else {
            // The config's 4 applies without the flag: the bound is real.
            assert!(most > 1 && most <= bound, "{most} requests at once");
        }
    }
    let run = regmirror_isolated(&["sync", "--concurrency", "0", "--config", "x.toml"], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--concurrency"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regmirror_config_names_the_file_and_a_single_image_in_a_short_target_warns() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "k8s/pause",
        "3.9",
        Node::Image(ImageSet::image("pause", "linux/amd64", Format::Oci)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            "[[mirror]]\nsource = \"{}/k8s/pause:3.9\"\ntarget = \"{}/m\"\n",
            src.host(),
            dst.host()
        ),
    );
    let env = [("REGMIRROR_CONFIG", cfg.as_str())];
    let warning = format!("target {}/m is its repository", dst.host());
    let hint = format!("target = \"{}/m/pause\"", dst.host());

    let run = regmirror_isolated(&["check"], &env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("{cfg}: ok")), "{}", run.stdout);
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    assert!(run.stderr.contains(&hint), "{}", run.stderr);

    let run = regmirror_isolated(&["sync"], &env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    assert!(
        Pusher::for_registry(&dst)
            .manifest_exists("m", "3.9")
            .await
            .unwrap(),
        "the image lands in repository m, as the warning says"
    );

    // --config wins over the variable; without either, --config is asked
    // for, and each command's help names the variable.
    let run = regmirror_isolated(&["check", "--config", "/nonexistent/other.toml"], &env).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/other.toml"),
        "{}",
        run.stderr
    );
    let run = regmirror_isolated(&["check"], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
    // The variable is only a default: mirrors given on the command line
    // win over it, as a --config flag would not.
    let source = format!("{}/k8s/pause:3.9", src.host());
    let target = format!("{}/cli/pause", dst.host());
    let run = regmirror_isolated(&["sync", &source, &target], &env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        Pusher::for_registry(&dst)
            .manifest_exists("cli/pause", "3.9")
            .await
            .unwrap(),
        "the command-line mirror ran, not the config's"
    );
    for command in ["check", "sync", "serve"] {
        let run = regmirror_isolated(&[command, "--help"], &[]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains("[env: REGMIRROR_CONFIG"),
            "{command}: {}",
            run.stdout
        );
    }

    // A target that keeps the source's name, or a registry alone, does not warn.
    for target in [format!("{}/pause", dst.host()), dst.host()] {
        let cfg = write_config(
            &dir,
            &format!(
                "[[mirror]]\nsource = \"{}/k8s/pause:3.9\"\ntarget = \"{target}\"\n",
                src.host()
            ),
        );
        let run = regmirror_isolated(&["check", "--config", &cfg, "--no-credentials"], &[]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            !run.stderr.contains("is its repository"),
            "{target}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_get_a_suggestion_and_a_regex_in_double_quotes_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let m = "[[mirror]]\nsource = \"ghcr.io/org/app\"\ntarget = \"127.0.0.1:5999/app\"\n";
    for (text, needle) in [
        (format!("{m}semvar = \"^1\"\n"), "did you mean `semver`?"),
        (
            "[defaults]\nconcurency = 2\n".to_string(),
            "did you mean `concurrency`?",
        ),
        (
            "[[registry]]\nhost = \"ghcr.io\"\nusrname = \"u\"\n".to_string(),
            "did you mean `username`?",
        ),
        (
            format!("{m}repositores = [\"*\"]\n"),
            "did you mean `repositories`?",
        ),
        (
            "alow_empty = true\n".to_string(),
            "did you mean `allow_empty`?",
        ),
        (format!("{m}include = [\"^v\\d+$\"]\n"), "single quotes"),
    ] {
        let cfg = write_config(&dir, &text);
        let run = regmirror_isolated(&["check", "--config", &cfg], &[]).await;
        assert_eq!(run.code, 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{text}: {}", run.stderr);
        // The suggestion replaces the list of every key.
        assert!(
            !run.stderr.contains("expected one of"),
            "{text}: {}",
            run.stderr
        );
    }
    // The suggested spelling, in single quotes, is accepted.
    let cfg = write_config(&dir, &format!("{m}include = ['^v\\d+$']\n"));
    let run = regmirror_isolated(&["check", "--config", &cfg, "--no-credentials"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("include /^v\\d+$/"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        "[defaults]\ntimezone = \"Mars/Olympus\"\n\n\
         [[registry]]\nhost = \"a.example.com\"\nusername = \"u\"\npassword_env = \"REGMIRROR_TEST_SURELY_UNSET\"\n\n\
         [[registry]]\nhost = \"b.example.com\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n\n\
         [[mirror]]\nsource = \"ghcr.io/org/a\"\ntarget = \"127.0.0.1:5999/a\"\nsemver = \"~~~\"\n\n\
         [[mirror]]\nsource = \"ghcr.io/org/b:1\"\ntarget = \"127.0.0.1:5999/b\"\nschedule = \"@daily\"\ninterval = \"1h\"\n\n\
         [[mirror]]\nsource = \"ghcr.io/org/c:1\"\ntarget = \"127.0.0.1:5999/c\"\n",
    );
    let run = regmirror_isolated(&["check", "--config", &cfg], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    for needle in [
        "defaults.timezone",
        "mirror[1].semver",
        "mirror[2].interval",
        "REGMIRROR_TEST_SURELY_UNSET",
        "/nonexistent/pw",
        "5 problems found",
    ] {
        assert!(
            run.stderr.contains(needle),
            "no {needle:?} in: {}",
            run.stderr
        );
    }
    assert_eq!(run.stderr.matches("error:").count(), 5, "{}", run.stderr);
    assert!(!run.stdout.contains(": ok"), "{}", run.stdout);

    // `sync` still stops at the first problem, with the same message.
    let run = regmirror_isolated(&["sync", "--config", &cfg], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("defaults.timezone"), "{}", run.stderr);
    assert!(!run.stderr.contains("mirror[1].semver"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_the_concurrency_flag_too() {
    let (slow, most, total) = slow_registry().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[defaults]\nconcurrency = 4\n\n\
             [[mirror]]\nsource = \"{}/team/app\"\ntags = [\"a\", \"b\", \"c\", \"d\"]\n\
             target = \"{}/mirror/app\"\n",
            slow.host(),
            dst.host()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(&cfg, dir.path(), port, &["--concurrency", "1"]);
    // The first run asks for each of the 4 tags once.
    d.wait_for(
        "the first run's 4 requests",
        Duration::from_secs(60),
        async || total.load(Ordering::SeqCst) >= 4,
    )
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "{}", d.log());
}
