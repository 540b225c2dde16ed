//! Push events into `regmirror serve` (`[events]`): a real `docker-registry`
//! whose `notifications.endpoints` point at the receiver gets a push
//! mirrored with no schedule due; forged, replayed, oversized, flooding and
//! foreign events are refused, counted in /metrics and never mirrored; the
//! payloads Harbor, GitHub, Quay and Docker Hub document (in
//! tests/fixtures/events/, each citing its page) run their mirrors; the
//! sync-now API and `regmirror trigger --wait` through the binary.
//!
//! Only GitHub, Harbor, Quay and Docker Hub are not run for real (hosted
//! services): their requests are sent by the test, with the bodies their
//! documentation publishes and the signatures or headers it specifies.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::serve::{Daemon, free_port, sample};
use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, push};

/// A schedule that is never due during a test (midnight of January 1st).
const NEVER_DUE: &str = "0 0 0 1 1 *";

async fn exists(reg: &TestRegistry, repo: &str, tag: &str) -> bool {
    Pusher::for_registry(reg)
        .manifest_exists(repo, tag)
        .await
        .unwrap_or(false)
}

async fn push_small(reg: &TestRegistry, repo: &str, tag: &str) {
    let seed = format!("{repo}/{tag}");
    push(
        reg,
        repo,
        tag,
        ImageSet::image(&seed, "linux/amd64", Format::Oci),
    )
    .await
    .unwrap();
}

pub(crate) fn mirror_toml(
    name: &str,
    src: &TestRegistry,
    repo: &str,
    dst: &TestRegistry,
) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nsource = \"{}/{repo}\"\ntarget = \"{}/mirror/{repo}\"\nschedule = \"{NEVER_DUE}\"\n\n",
        src.host(),
        dst.host()
    )
}

/// `sha256=HEX` of `message` under `key`.
fn sign(key: &str, message: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&k, message).as_ref())
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn events_total(text: &str, source: &str, result: &str, reason: &str) -> f64 {
    sample(
        text,
        "regmirror_events_total",
        &[("source", source), ("result", result), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// Start serve on `config` (written to DIR/mirror.toml) and wait until
/// every mirror finished its first run.
async fn start(dir: &Path, port: u16, config: &str) -> Daemon {
    start_with(dir, port, config, &[]).await
}

/// [`start`] with `extra` arguments for serve.
pub(crate) async fn start_with(dir: &Path, port: u16, config: &str, extra: &[&str]) -> Daemon {
    let path = dir.join("mirror.toml");
    std::fs::write(&path, config).unwrap();
    let d = Daemon::start_with(&path, dir, port, extra);
    d.wait_for("first runs", Duration::from_secs(60), async || {
        let Some((200, text)) = d.get("/metrics").await else {
            return false;
        };
        sample(&text, "regmirror_first_runs_complete", &[]) == Some(1.0)
    })
    .await;
    d
}

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut r = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.expect("the receiver answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// `GET /api/v1/runs/{id}` at `base` (token `api-70ken-e5`) until the run
/// is done; every state seen on the way is one the docs name.
async fn run_done(base: &str, id: u64) -> serde_json::Value {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(format!("{base}/api/v1/runs/{id}"))
            .bearer_auth("api-70ken-e5")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "GET /api/v1/runs/{id} at {base}: {text}");
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        let state = record["state"].as_str().unwrap_or_default().to_string();
        assert!(
            ["queued", "running", "done"].contains(&state.as_str()),
            "{record}"
        );
        assert_eq!(record["id"], id, "{record}");
        if state == "done" {
            return record;
        }
        assert!(
            record.get("report").is_none(),
            "no report before the run is done: {record}"
        );
        assert!(
            Instant::now() < deadline,
            "run {id} never finished: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_mirrored(d: &Daemon, dst: &TestRegistry, repo: &str, tag: &str) {
    d.wait_for(
        &format!("{repo}:{tag} at the target"),
        Duration::from_secs(30),
        async || exists(dst, &format!("mirror/{repo}"), tag).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_into_a_real_registry_is_mirrored_by_its_notification_with_no_schedule_due() {
    let events_port = free_port();
    let secret = "Bearer notify-7f3a9c-secret";
    // The distribution notifications config (docs: distribution's
    // "notifications" section): every event of the registry goes to
    // /events/upstream with the Authorization header it is given.
    let notifications = format!(
        "notifications:\n  endpoints:\n    - name: regmirror\n      url: http://127.0.0.1:{events_port}/events/upstream\n      \
         headers:\n        Authorization: [\"{secret}\"]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n      \
         ignoredmediatypes:\n        - application/octet-stream\n"
    );
    let src = TestRegistry::start(RegistryOptions {
        notifications: Some(notifications),
        ..RegistryOptions::anonymous()
    })
    .await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_small(&src, "team/app", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notify-secret"), format!("{secret}\n")).unwrap();
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[events]\nlisten = \"127.0.0.1:{events_port}\"\n\n\
         [[events.source]]\nname = \"upstream\"\nkind = \"distribution\"\nregistry = \"{}\"\nsecret_file = \"notify-secret\"\n\n{}",
        src.host(),
        mirror_toml("app", &src, "team/app", &dst)
    );
    let d = start(dir.path(), port, &config).await;
    assert!(
        exists(&dst, "mirror/team/app", "v1").await,
        "the first run copied v1"
    );

    let pushed = Instant::now();
    push_small(&src, "team/app", "v2").await;
    wait_mirrored(&d, &dst, "team/app", "v2").await;
    eprintln!("push -> tag at the target: {:?}", pushed.elapsed());

    // A burst of 20 tags: every one is mirrored, in fewer runs than pushes.
    let runs_before = d.log().matches("triggered run starts").count();
    for i in 0..20 {
        push_small(&src, "team/app", &format!("burst-{i}")).await;
    }
    for i in 0..20 {
        wait_mirrored(&d, &dst, "team/app", &format!("burst-{i}")).await;
    }
    let burst_runs = d.log().matches("triggered run starts").count() - runs_before;
    assert!(
        (1..20).contains(&burst_runs),
        "20 pushes coalesce into fewer runs, got {burst_runs}"
    );
    let text = d.metrics().await;
    assert!(
        events_total(&text, "distribution", "accepted", "none") >= 21.0,
        "{text}"
    );
    assert_eq!(events_total(&text, "distribution", "rejected", "auth"), 0.0);
    assert!(
        !d.log().contains("notify-7f3a9c"),
        "the shared secret never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_oversized_flooding_and_foreign_events_are_refused_counted_and_never_mirrored()
 {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_small(&src, "team/app", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("up", "Bearer up-5ecret-a1"),
        ("gh", "gh-5ecret-b2"),
        ("ce", "ce-5ecret-c3"),
        ("flood", "fl-5ecret-d4"),
    ];
    for (name, value) in secrets {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let (port, events_port) = (free_port(), free_port());
    let host = src.host();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[events]\nlisten = \"127.0.0.1:{events_port}\"\n\n\
         [[events.source]]\nname = \"up\"\nkind = \"distribution\"\nregistry = \"{host}\"\nsecret_file = \"up\"\n\n\
         [[events.source]]\nname = \"gh\"\nkind = \"github\"\nregistry = \"{host}\"\nsecret_file = \"gh\"\n\n\
         [[events.source]]\nname = \"ce\"\nkind = \"cloudevents\"\nregistry = \"{host}\"\nsecret_file = \"ce\"\n\n\
         [[events.source]]\nname = \"flood\"\nkind = \"cloudevents\"\nauth = \"bearer\"\nregistry = \"{host}\"\nsecret_file = \"flood\"\nrate_per_minute = 2\n\n{}",
        mirror_toml("app", &src, "team/app", &dst)
    );
    let d = start(dir.path(), port, &config).await;
    push_small(&src, "team/app", "v2").await;
    let url = |s: &str| format!("http://127.0.0.1:{events_port}/events/{s}");
    let slow = tokio::spawn(slow_body(events_port));

    let envelope =
        r#"{"events":[{"action":"push","target":{"repository":"team/app","tag":"v2"}}]}"#;
    let (status, body) = post(&url("up"), &[("authorization", "Bearer wrong")], envelope).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = post(&url("up"), &[], envelope).await;
    assert_eq!(status, 401);

    let gh = r#"{"action":"published","package":{"name":"app","namespace":"team","package_type":"CONTAINER","package_version":{"container_metadata":{"tag":{"name":"v2"}}}}}"#;
    let forged = sign("not-the-secret", gh.as_bytes());
    let (status, body) = post(
        &url("gh"),
        &[
            ("x-github-event", "package"),
            ("x-hub-signature-256", &forged),
        ],
        gh,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("X-Hub-Signature-256"), "{body}");

    let ce = |repo: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"1","source":"/ci","type":"push","data":{{"repository":"{repo}","tag":"v2"}}}}"#
        )
    };
    let old = (unix_now() - 600).to_string();
    let replayed = sign(
        "ce-5ecret-c3",
        format!("{old}.{}", ce("team/app")).as_bytes(),
    );
    let (status, body) = post(
        &url("ce"),
        &[
            ("x-regmirror-timestamp", &old),
            ("x-regmirror-signature", &replayed),
        ],
        ce("team/app"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("replay"), "{body}");

    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, _) = post(&url("ce"), &[], big).await;
    assert_eq!(status, 413);

    let now = unix_now().to_string();
    let foreign = sign(
        "ce-5ecret-c3",
        format!("{now}.{}", ce("team/other")).as_bytes(),
    );
    let (status, body) = post(
        &url("ce"),
        &[
            ("x-regmirror-timestamp", &now),
            ("x-regmirror-signature", &foreign),
        ],
        ce("team/other"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_repository"), "{body}");

    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(
            post(&url("flood"), &[("authorization", "Bearer wrong")], "{}")
                .await
                .0,
        );
    }
    assert_eq!(flood, [401, 401, 429]);

    let slow = slow.await.unwrap();
    assert!(
        slow.starts_with("HTTP/1.1 408"),
        "a body that never comes: {slow}"
    );
    assert!(
        !exists(&dst, "mirror/team/app", "v2").await,
        "no refused event ran the mirror"
    );
    let text = d.metrics().await;
    for (source, reason, n) in [
        ("distribution", "auth", 2.0),
        ("github", "signature", 1.0),
        ("cloudevents", "replay", 1.0),
        ("cloudevents", "too_large", 1.0),
        ("cloudevents", "unknown_repository", 1.0),
        ("cloudevents", "auth", 2.0),
        ("cloudevents", "rate_limited", 1.0),
        ("cloudevents", "timeout", 1.0),
    ] {
        assert_eq!(
            events_total(&text, source, "rejected", reason),
            n,
            "{source} {reason}:\n{text}"
        );
    }
    assert_eq!(events_total(&text, "cloudevents", "accepted", "none"), 0.0);

    // The same event, signed now with the secret: mirrored.
    let good = sign(
        "ce-5ecret-c3",
        format!("{now}.{}", ce("team/app")).as_bytes(),
    );
    let (status, body) = post(
        &url("ce"),
        &[
            ("x-regmirror-timestamp", &now),
            ("x-regmirror-signature", &good),
        ],
        ce("team/app"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_mirrored(&d, &dst, "team/app", "v2").await;
    let log = d.log();
    for (_, value) in secrets {
        assert!(
            !log.contains(value.trim_start_matches("Bearer ")),
            "a secret reached the log"
        );
    }
}

/// Send a request whose body never comes to source `ce`; the answer's text.
async fn slow_body(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"POST /events/ce HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/events")
            .join(name),
    )
    .unwrap()
}

/// The published payloads (tests/fixtures/events/README.md cites each page):
/// GitHub's `package` event signed per https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
/// (HMAC-SHA256 of the body, `X-Hub-Signature-256: sha256=HEX`); Harbor's
/// PUSH_ARTIFACT with the auth header its policy is given
/// (https://goharbor.io/docs/2.8.0/working-with-projects/project-configuration/configure-webhooks/);
/// Quay's repository push and Docker Hub's webhook, unsigned
/// (https://docs.docker.com/docker-hub/repos/manage/webhooks/, Red Hat Quay
/// "Repository Notifications"), accepted only for listed repositories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_payloads_of_github_harbor_quay_and_docker_hub_run_their_mirrors() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gh"), "gh-fixture-key").unwrap();
    std::fs::write(dir.path().join("harbor"), "Basic aGFyYm9yOmZpeHR1cmU=").unwrap();
    let (port, events_port) = (free_port(), free_port());
    let host = src.host();
    let repos = [
        "octo-org/hello-world",
        "harbor/alpine",
        "dgangaia/test",
        "svendowideit/testhook",
    ];
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[events]\nlisten = \"127.0.0.1:{events_port}\"\n\n\
         [[events.source]]\nname = \"gh\"\nkind = \"github\"\nregistry = \"{host}\"\nsecret_file = \"gh\"\n\n\
         [[events.source]]\nname = \"harbor\"\nkind = \"harbor\"\nregistry = \"{host}\"\nsecret_file = \"harbor\"\n\n\
         [[events.source]]\nname = \"quay\"\nkind = \"quay\"\nregistry = \"{host}\"\nrepositories = [\"dgangaia/test\"]\n\n\
         [[events.source]]\nname = \"hub\"\nkind = \"dockerhub\"\nregistry = \"{host}\"\nrepositories = [\"someone/else\"]\n\n"
    );
    for (i, repo) in repos.iter().enumerate() {
        config.push_str(&mirror_toml(&format!("m{i}"), &src, repo, &dst));
    }
    // Every mirror's first run finds nothing; the images come after.
    let d = start(dir.path(), port, &config).await;
    for (repo, tag) in [
        ("octo-org/hello-world", "v1.2.0"),
        ("harbor/alpine", "3.19"),
        ("dgangaia/test", "latest"),
        ("svendowideit/testhook", "latest"),
    ] {
        push_small(&src, repo, tag).await;
    }
    let url = |s: &str| format!("http://127.0.0.1:{events_port}/events/{s}");

    let gh = fixture("github-package-published.json");
    let forged = sign("another-key", gh.as_bytes());
    let (status, _) = post(
        &url("gh"),
        &[
            ("x-github-event", "package"),
            ("x-hub-signature-256", &forged),
        ],
        gh.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let harbor = fixture("harbor-push-artifact.json");
    let (status, _) = post(
        &url("harbor"),
        &[("authorization", "Basic d3Jvbmc6d3Jvbmc=")],
        harbor.clone(),
    )
    .await;
    assert_eq!(status, 401);
    // Docker Hub names a repository its source does not list: refused.
    let (status, body) = post(&url("hub"), &[], fixture("dockerhub-push.json")).await;
    assert_eq!(status, 404, "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (repo, tag) in [
        ("octo-org/hello-world", "v1.2.0"),
        ("harbor/alpine", "3.19"),
        ("svendowideit/testhook", "latest"),
    ] {
        assert!(
            !exists(&dst, &format!("mirror/{repo}"), tag).await,
            "{repo} ran on a refused event"
        );
    }

    // A ping (sent when the webhook is created) is answered 200 and runs nothing.
    let ping = r#"{"zen":"Design for failure.","hook_id":1}"#;
    let ping_sig = sign("gh-fixture-key", ping.as_bytes());
    let (status, body) = post(
        &url("gh"),
        &[
            ("x-github-event", "ping"),
            ("x-hub-signature-256", &ping_sig),
        ],
        ping,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let signed = sign("gh-fixture-key", gh.as_bytes());
    let (status, body) = post(
        &url("gh"),
        &[
            ("x-github-event", "package"),
            ("x-hub-signature-256", &signed),
        ],
        gh,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(
        &url("harbor"),
        &[("authorization", "Basic aGFyYm9yOmZpeHR1cmU=")],
        harbor,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(&url("quay"), &[], fixture("quay-push.json")).await;
    assert_eq!(status, 202, "{body}");
    wait_mirrored(&d, &dst, "octo-org/hello-world", "v1.2.0").await;
    wait_mirrored(&d, &dst, "harbor/alpine", "3.19").await;
    wait_mirrored(&d, &dst, "dgangaia/test", "latest").await;
    let text = d.metrics().await;
    assert_eq!(events_total(&text, "github", "rejected", "signature"), 1.0);
    assert_eq!(events_total(&text, "harbor", "rejected", "auth"), 1.0);
    assert_eq!(
        events_total(&text, "dockerhub", "rejected", "unknown_repository"),
        1.0
    );
    for source in ["github", "harbor", "quay"] {
        assert_eq!(
            events_total(&text, source, "accepted", "none"),
            1.0,
            "{source}"
        );
    }
}

/// GitHub's own published examples of a container's `package` and
/// `registry_package` events: octokit/webhooks (the payload examples the
/// GitHub docs are built from) at commit 417035e183b27429e007e246b455c1ae29b75f24,
/// `payload-examples/api.github.com/package/published.docker.payload.json`
/// and `.../registry_package/published.docker.payload.json`, in
/// tests/fixtures/events/ as published but for the `*_url` lists of the
/// user, organisation and repository objects, signed as GitHub signs
/// (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries).
/// They contradict themselves (`package_type` "npm", `ecosystem` "docker",
/// `registry.type` "CONTAINER"; name "hello-world-npm" in namespace
/// "Codertocat/hello-world"; `package_url` "ghcr.io/Codertocat/hello-world:"
/// with an empty tag, a push by digest): each runs the mirror of
/// codertocat/hello-world, the repository of its `package_url`, whole (a
/// re-check), and not the mirror of the owner/name repository; forged
/// signatures are refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_published_container_examples_recheck_the_repository_of_their_package_url() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gh"), "gh-fixture-key").unwrap();
    let (port, events_port) = (free_port(), free_port());
    let host = src.host();
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[events]\nlisten = \"127.0.0.1:{events_port}\"\n\n\
         [[events.source]]\nname = \"gh\"\nkind = \"github\"\nregistry = \"{host}\"\nsecret_file = \"gh\"\n\n"
    );
    config.push_str(&mirror_toml("url", &src, "codertocat/hello-world", &dst));
    config.push_str(&mirror_toml(
        "owner-name",
        &src,
        "codertocat/hello-world-npm",
        &dst,
    ));
    let d = start(dir.path(), port, &config).await;
    push_small(&src, "codertocat/hello-world", "nightly").await;
    push_small(&src, "codertocat/hello-world-npm", "nightly").await;
    let url = format!("http://127.0.0.1:{events_port}/events/gh");
    let send = async |event: &str, body: &str, key: &str| {
        let signature = sign(key, body.as_bytes());
        let headers = [
            ("x-github-event", event),
            ("x-hub-signature-256", signature.as_str()),
        ];
        post(&url, &headers, body.to_string()).await
    };
    let examples = [
        (
            "package",
            fixture("github-package-published-docker.json"),
            "nightly",
        ),
        (
            "registry_package",
            fixture("github-registry-package-published-docker.json"),
            "v2",
        ),
    ];
    for (event, body, tag) in &examples {
        let (status, answer) = send(event, body, "another-key").await;
        assert_eq!(status, 401, "forged {event}: {answer}");
        if *tag != "nightly" {
            // Pushed after the first example's re-check: only a new run copies it.
            push_small(&src, "codertocat/hello-world", tag).await;
        }
        let (status, answer) = send(event, body, "gh-fixture-key").await;
        assert_eq!(status, 202, "{event}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let runs: Vec<&str> = answer["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["mirror"].as_str())
            .collect();
        assert_eq!(runs, ["url"], "{event}: {answer}");
        wait_mirrored(&d, &dst, "codertocat/hello-world", tag).await;
    }
    assert!(
        !exists(&dst, "mirror/codertocat/hello-world-npm", "nightly").await,
        "the owner/name repository ran"
    );
    let text = d.metrics().await;
    assert_eq!(events_total(&text, "github", "rejected", "signature"), 2.0);
    assert_eq!(events_total(&text, "github", "accepted", "none"), 2.0);
    assert!(!d.log().contains("gh-fixture-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_now_api_and_trigger_wait_run_a_mirror_and_report_it() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_small(&src, "team/app", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api-token");
    std::fs::write(&token, "api-70ken-e5\n").unwrap();
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "nope\n").unwrap();
    let (port, events_port) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[events]\nlisten = \"127.0.0.1:{events_port}\"\napi_token_file = \"api-token\"\n\n{}",
        mirror_toml("app", &src, "team/app", &dst)
    );
    let d = start(dir.path(), port, &config).await;
    push_small(&src, "team/app", "v2").await;
    push_small(&src, "team/app", "v3").await;
    let base = format!("http://127.0.0.1:{events_port}");

    let run = common::regmirror(&[
        "trigger",
        "--url",
        &base,
        "--token-file",
        wrong.to_str().unwrap(),
        "app",
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("401") && run.stderr.contains("bearer token"),
        "{}",
        run.stderr
    );
    let run = common::regmirror(&[
        "trigger",
        "--url",
        &base,
        "--token-file",
        token.to_str().unwrap(),
        "nosuch",
    ])
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no mirror named"), "{}", run.stderr);

    let run = common::regmirror(&[
        "trigger",
        "--url",
        &base,
        "--token-file",
        token.to_str().unwrap(),
        "app",
        "--tag",
        "v2",
        "--wait",
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let record: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(record["only"], serde_json::json!(["team/app:v2"]));
    let errors = crate::cli_report::schema_errors(&record["report"]);
    assert!(
        errors.is_empty(),
        "the run's report is the sync --output json document: {errors:#?}\n{record:#}"
    );
    assert_eq!(
        (
            &record["report"]["command"],
            &record["report"]["mirrors"][0]["name"]
        ),
        (&serde_json::json!("sync"), &serde_json::json!("app")),
        "{record}"
    );
    let images = record["report"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "only the tag asked for: {record}");
    assert_eq!(images[0]["result"], "copied", "{record}");
    assert!(exists(&dst, "mirror/team/app", "v2").await);
    assert!(
        !exists(&dst, "mirror/team/app", "v3").await,
        "the run was narrowed to v2"
    );

    // The whole mirror, through the API itself.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/api/v1/mirrors/app/sync"))
        .bearer_auth("api-70ken-e5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["id"]
        .as_u64()
        .unwrap();
    wait_mirrored(&d, &dst, "team/app", "v3").await;
    let record = run_done(&base, id).await;
    let errors = crate::cli_report::schema_errors(&record["report"]);
    assert!(
        errors.is_empty(),
        "GET /api/v1/runs/{id}: {errors:#?}\n{record:#}"
    );
    assert_eq!(record["report"]["result"], "success", "{record}");
    assert_eq!(record["report"]["exit_code"], 0, "{record}");
    let r = http
        .get(format!("{base}/api/v1/runs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the run's state needs the token too"
    );
    let r = http
        .get(format!("{base}/api/v1/runs/999999"))
        .bearer_auth("api-70ken-e5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let text = d.metrics().await;
    assert!(
        events_total(&text, "api", "rejected", "auth") >= 2.0,
        "{text}"
    );
    assert_eq!(
        events_total(&text, "api", "rejected", "unknown_mirror"),
        1.0
    );
    assert!(!d.log().contains("api-70ken-e5"));
}

/// Mirror `name`'s triggered run started on replica `owner` and on no other.
fn assert_ran_on_owner_alone(daemons: &[Daemon], name: &str, owner: u32) {
    let marker = format!("mirror={name} ");
    for (i, d) in daemons.iter().enumerate() {
        let ran = d
            .log()
            .lines()
            .any(|l| l.contains("triggered run starts") && l.contains(&marker));
        assert_eq!(
            ran,
            i as u32 == owner,
            "{name} (owner {owner}) on replica {i}:\n{}",
            d.log()
        );
    }
}

/// Three `serve` replicas splitting mirrors `m*` (`[shard] count = 3`,
/// one mirror per shard), each listening for events on its own loopback
/// address (127.0.I.1) as each pod of the StatefulSet has its own name,
/// with `[events] peers` naming them, the CloudEvents source `ci` (bearer
/// `shard-70ken-f6`) and `events` (more `[events]` keys); started, with
/// every first run done. The replicas, the mirrors with their owners, and
/// the events port.
async fn three_shards(
    src: &TestRegistry,
    dst: &TestRegistry,
    dir: &Path,
    events: &str,
) -> (Vec<Daemon>, Vec<(String, u32)>, u16) {
    std::fs::write(dir.join("token"), "shard-70ken-f6").unwrap();
    // Mirrors until every shard owns one.
    let mut names: Vec<(String, u32)> = Vec::new();
    for i in 0.. {
        let name = format!("m{i}");
        let owner = regmirror::sync::shard::owner(&name, 3);
        if !names.iter().any(|(_, o)| *o == owner) {
            names.push((name, owner));
        }
        if names.len() == 3 {
            break;
        }
    }
    let events_port = free_port();
    let mut mirrors = String::new();
    for (name, _) in &names {
        mirrors.push_str(&mirror_toml(name, src, &format!("team/{name}"), dst));
    }
    let mut daemons = Vec::new();
    for i in 0..3u32 {
        let sub = dir.join(format!("r{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let port = free_port();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[shard]\ncount = 3\n\n\
             [events]\nlisten = \"127.0.{i}.1:{events_port}\"\npeers = \"http://127.0.{{index}}.1:{events_port}\"\n{events}\n\
             [[events.source]]\nname = \"ci\"\nkind = \"cloudevents\"\nauth = \"bearer\"\nregistry = \"{}\"\nsecret_file = \"../token\"\n\n{mirrors}",
            src.host()
        );
        let path = sub.join("mirror.toml");
        std::fs::write(&path, config).unwrap();
        daemons.push(Daemon::start_with(
            &path,
            &sub,
            port,
            &["--shard-index", &i.to_string()],
        ));
    }
    for d in &daemons {
        d.wait_for("first runs", Duration::from_secs(60), async || {
            let Some((200, text)) = d.get("/metrics").await else {
                return false;
            };
            sample(&text, "regmirror_first_runs_complete", &[]) == Some(1.0)
        })
        .await;
    }
    (daemons, names, events_port)
}

/// Three `serve` replicas split the mirrors (`[shard] count = 3`); every
/// event goes to replica 0 only, as a Service would hand a hosted sender's
/// webhook to any one pod: each mirror is run by its owner alone (replica 0
/// forwards through `[events] peers`), and a forged event is refused before
/// it is forwarded. Each replica listens on its own loopback address
/// (127.0.I.1), as each pod of the StatefulSet has its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_shards_an_event_at_any_replica_runs_on_the_owner_alone() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemons, names, events_port) = three_shards(&src, &dst, dir.path(), "").await;
    for (name, _) in &names {
        push_small(&src, &format!("team/{name}"), "v1").await;
    }
    let url = format!("http://127.0.0.1:{events_port}/events/ci");
    let event = |name: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{name}","source":"/ci","type":"push","data":{{"repository":"team/{name}","tag":"v1"}}}}"#
        )
    };
    let (other, _) = names.iter().find(|(_, o)| *o != 0).unwrap();
    let (status, _) = post(&url, &[("authorization", "Bearer forged")], event(other)).await;
    assert_eq!(status, 401, "a forged event is refused before any forward");
    for (name, _) in &names {
        let (status, body) = post(
            &url,
            &[("authorization", "Bearer shard-70ken-f6")],
            event(name),
        )
        .await;
        assert_eq!(status, 202, "{name}: {body}");
    }
    for (name, owner) in &names {
        let d = &daemons[*owner as usize];
        wait_mirrored(d, &dst, &format!("team/{name}"), "v1").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, owner) in &names {
        assert_ran_on_owner_alone(&daemons, name, *owner);
    }
    let forwarded = daemons[0]
        .log()
        .matches("event forwarded to the shard that owns its mirror")
        .count();
    assert_eq!(forwarded, 2, "{}", daemons[0].log());
    for d in &daemons {
        assert!(!d.log().contains("shard-70ken-f6"));
    }
}

/// The sync-now API with three shards: every request goes to replica 0
/// (a Service hands it to any one pod). A request for a mirror another
/// shard owns is forwarded to that owner with the bearer token, runs there
/// alone, and answers with the owner's run id (`id % 3` is the owner);
/// `GET /api/v1/runs/{id}` at replica 0 is forwarded too, so
/// `regmirror trigger --wait` follows the run to its end and gets the
/// report of docs/report.schema.json. A request without the token is
/// refused before any forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_shards_the_sync_now_api_runs_a_mirror_on_its_owner() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api-token"), "api-70ken-e5\n").unwrap();
    let (daemons, names, events_port) = three_shards(
        &src,
        &dst,
        dir.path(),
        "api_token_file = \"../api-token\"\n",
    )
    .await;
    for (name, _) in &names {
        push_small(&src, &format!("team/{name}"), "v1").await;
    }
    let base = format!("http://127.0.0.1:{events_port}");
    let others: Vec<&(String, u32)> = names.iter().filter(|(_, o)| *o != 0).collect();
    assert_eq!(others.len(), 2);
    let http = reqwest::Client::new();

    let (name, owner) = others[0];
    let r = http
        .post(format!("{base}/api/v1/mirrors/{name}/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token: refused at replica 0");
    let r = http
        .post(format!("{base}/api/v1/mirrors/{name}/sync?tag=v1"))
        .bearer_auth("api-70ken-e5")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(
        status, 202,
        "{name} (owner {owner}) through replica 0: {text}"
    );
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = answer["id"].as_u64().unwrap();
    assert_eq!(
        id % 3,
        u64::from(*owner),
        "the id names the owner: {answer}"
    );
    let record = run_done(&base, id).await;
    assert_eq!(record["mirror"], name.as_str(), "{record}");
    let errors = crate::cli_report::schema_errors(&record["report"]);
    assert!(errors.is_empty(), "{errors:#?}\n{record:#}");
    assert_eq!(
        record["report"]["images"][0]["result"], "copied",
        "{record}"
    );
    assert!(exists(&dst, &format!("mirror/team/{name}"), "v1").await);

    let (second, second_owner) = others[1];
    let token = dir.path().join("api-token");
    let run = common::regmirror(&[
        "trigger",
        "--url",
        &base,
        "--token-file",
        token.to_str().unwrap(),
        second,
        "--wait",
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let record: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(
        record["id"].as_u64().map(|id| id % 3),
        Some(u64::from(*second_owner)),
        "{record}"
    );
    assert!(
        crate::cli_report::schema_errors(&record["report"]).is_empty(),
        "{record:#}"
    );
    assert!(exists(&dst, &format!("mirror/team/{second}"), "v1").await);

    for (name, owner) in [(name, owner), (second, second_owner)] {
        assert_ran_on_owner_alone(&daemons, name, *owner);
    }
    let forwarded = daemons[0]
        .log()
        .matches("API request forwarded to the shard that owns it")
        .count();
    assert!(
        forwarded >= 4,
        "two POSTs and their GETs: {}",
        daemons[0].log()
    );
    for d in &daemons {
        assert!(!d.log().contains("api-70ken-e5"), "{}", d.log());
    }
}
