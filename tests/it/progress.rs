//! `regmirror sync` progress through the binary, on a 250-tag mirror: bars
//! on a pseudo-terminal (`script`), plain log lines (text or JSON) when
//! stderr is not a terminal, none with `--progress none`; `--output json`
//! keeps stdout one JSON report in every case.

use std::path::Path;
use std::time::Duration;

use crate::common::{
    Fault, FaultPlan, Format, ImageSet, Pusher, RegistryOptions, TestProxy, TestRegistry, push,
    regmirror,
};

const TAGS: usize = 250;

/// The JSON report on stdout, with its image count.
fn report_images(stdout: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON report ({e}):\n{stdout}"));
    v["images"].as_array().map_or(0, Vec::len)
}

/// Run `regmirror ARGS > stdout_file` with stderr on a pseudo-terminal
/// (`script -qfec`); returns what the terminal showed and the exit code.
async fn on_a_terminal(args: &[&str], stdout_file: &Path) -> (String, i32) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = quote(env!("CARGO_BIN_EXE_regmirror"));
    for a in args {
        command.push(' ');
        command.push_str(&quote(a));
    }
    command.push_str(&format!(" > {}", quote(stdout_file.to_str().unwrap())));
    let out = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("running script");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    (shown, out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_tag_sync_shows_bars_on_a_terminal_and_lines_elsewhere() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("progress/app", "linux/amd64", Format::Oci);
    push(&src, "team/app", "t0", image.clone()).await.unwrap();
    let pusher = Pusher::for_registry(&src);
    for i in 1..TAGS {
        pusher
            .push_manifest("team/app", &format!("t{i}"), &image.manifest)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    // A terminal: a bar that ends at 250/250, logs around it, stdout pure JSON.
    let stdout_file = dir.path().join("report.json");
    let (shown, code) =
        on_a_terminal(&["sync", "--config", cfg, "--output", "json"], &stdout_file).await;
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("mirror app [") && shown.contains(&format!("] {TAGS}/{TAGS} images")),
        "no bar at {TAGS}/{TAGS} on the terminal:\n{shown}"
    );
    assert!(
        shown.contains(&format!("mirror run started: {TAGS} images selected")),
        "{shown}"
    );
    assert!(
        shown.contains(" B/s, ") && shown.contains("(ETA "),
        "{shown}"
    );
    // Log lines are written above the bar, never into it.
    for piece in shown.split(['\r', '\n']) {
        assert!(
            !(piece.contains("mirror app [") && piece.contains("INFO")),
            "a log line went through the bar: {piece:?}"
        );
    }
    assert!(
        !shown.contains(&format!("mirror app: {TAGS}/{TAGS} images")),
        "plain lines on a terminal:\n{shown}"
    );
    let stdout = std::fs::read_to_string(&stdout_file).unwrap();
    assert_eq!(report_images(&stdout), TAGS);

    // Not a terminal: a plain line when the mirror ends, no bar.
    let run = regmirror(&["sync", "--config", cfg, "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report_images(&run.stdout), TAGS);
    assert!(
        run.stderr
            .contains(&format!("mirror app: {TAGS}/{TAGS} images, ")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("] 250/250"), "{}", run.stderr);

    // JSON logs: the line is a JSON event with its counts.
    let run = regmirror(&[
        "sync",
        "--config",
        cfg,
        "--output",
        "json",
        "--log-format",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report_images(&run.stdout), TAGS);
    let done: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .filter(|v| v["fields"]["images_total"] == TAGS)
        .collect();
    assert_eq!(done.len(), 1, "{}", run.stderr);
    assert_eq!(done[0]["fields"]["images_done"], TAGS);
    assert_eq!(done[0]["fields"]["mirror"], "app");

    // --progress none: no progress line; the rest of the logs stay.
    let run = regmirror(&["sync", "--config", cfg, "--progress", "none"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("images, "), "{}", run.stderr);
    assert!(run.stderr.contains("mirror run finished"), "{}", run.stderr);
    // --progress plain on a terminal: the line, no bar.
    let (shown, code) = on_a_terminal(
        &[
            "sync",
            "--config",
            cfg,
            "--output",
            "json",
            "--progress",
            "plain",
        ],
        &stdout_file,
    )
    .await;
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains(&format!("mirror app: {TAGS}/{TAGS} images, ")),
        "{shown}"
    );
    assert!(!shown.contains("mirror app ["), "{shown}");
}

/// A plain line comes every 10 s while a mirror runs, not only at its end:
/// the source's blob GETs are held back 12 s by a proxy, so the mirror is
/// still at 0/2 images when the first periodic line is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lines_come_periodically_while_a_mirror_runs() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("progress/slow", "linux/amd64", Format::Oci);
    push(&src, "team/app", "a", image.clone()).await.unwrap();
    push(&src, "team/app", "b", image.clone()).await.unwrap();
    let plan = FaultPlan::none().always("GET", "/blobs/", Fault::Stall(Duration::from_secs(12)));
    let slow = TestProxy::start(&src.base_url(), plan).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"slow\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
            slow.host(),
            dst.host()
        ),
    )
    .unwrap();
    let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("mirror slow: 0/2 images, "),
        "no line while the mirror ran:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("mirror slow: 2/2 images, "),
        "{}",
        run.stderr
    );
}

/// `--progress bar` draws the bars with stderr a pipe (as a CI runner's log
/// is): the bar's frames, with the erase-line sequence a log viewer renders,
/// end at 3/3; `auto` (the default) draws none there and writes the plain
/// line instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bar_draws_bars_off_a_terminal_and_auto_does_not() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("progress/bar", "linux/amd64", Format::Oci);
    for t in ["t0", "t1", "t2"] {
        push(&src, "team/app", t, image.clone()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let args = [
        "sync",
        "--config",
        cfg,
        "--output",
        "json",
        "--progress",
        "bar",
    ];
    let run = regmirror(&args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report_images(&run.stdout), 3);
    assert!(
        run.stderr.contains("mirror app [") && run.stderr.contains("] 3/3 images"),
        "no bar at 3/3 on stderr:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("\x1b[2K"), "{:?}", run.stderr);
    assert!(
        !run.stderr.contains("mirror app: 3/3 images"),
        "{}",
        run.stderr
    );
    for piece in run.stderr.split(['\r', '\n']) {
        assert!(
            !(piece.contains("mirror app [") && piece.contains("INFO")),
            "a log line went through the bar: {piece:?}"
        );
    }

    let run = regmirror(&["sync", "--config", cfg, "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("mirror app [") && !run.stderr.contains("\x1b[2K"),
        "{:?}",
        run.stderr
    );
    assert!(
        run.stderr.contains("mirror app: 3/3 images, "),
        "{}",
        run.stderr
    );
}
