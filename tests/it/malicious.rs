//! Attacks by a malicious or broken registry, run against the built binary.
//!
//! A real registry cannot be made malicious, so each attack is played by
//! [`MaliciousServer`] (tests/it/common/malicious.rs), alone or in front of a
//! real `docker-registry`. Where an attack is about what reaches a target,
//! the real target's own access log is the witness; where it is about
//! credentials, the malicious servers record every header, query and body.
//! Deadlines are shortened with `--timeout` or config keys so that every
//! test ends in seconds; the assertions on time are loose upper bounds far
//! below the 60 s defaults.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::malicious::{endless_body, respond, stalling_body, trickling_body};
use common::{
    Answer, Format, ImageSet, MaliciousServer, Pusher, Recorded, RegistryOptions, TestRegistry,
    push, regmirror,
};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("writing a test file");
    p
}

/// (method, path) of every request in a `docker-registry` access log.
fn logged_requests(reg: &TestRegistry) -> Vec<(String, String)> {
    let re = regex::Regex::new(r#""(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP"#).unwrap();
    reg.log()
        .lines()
        .filter_map(|l| re.captures(l))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

/// Paths the real registry served outside `/v2/` and `/v2/<repo>/`, after
/// its first `since` logged requests (the test's own setup).
fn outside(reg: &TestRegistry, repo: &str, since: usize) -> Vec<(String, String)> {
    let prefix = format!("/v2/{repo}/");
    logged_requests(reg)
        .into_iter()
        .skip(since)
        .filter(|(_, p)| p != "/v2/" && !p.starts_with(&prefix))
        .collect()
}

/// Requests logged so far, once the log has caught up.
async fn logged_so_far(reg: &TestRegistry) -> usize {
    tokio::time::sleep(Duration::from_millis(300)).await;
    logged_requests(reg).len()
}

/// A source registry with `team/app:1` (a single-platform image) and its digest.
async fn source_with_image() -> (TestRegistry, String) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("malicious/app", "linux/amd64", Format::Oci);
    push(&src, "team/app", "1", image.clone()).await.unwrap();
    (src, image.digest().to_string())
}

/// `regmirror import [--config CFG] SRC DST`.
async fn import(cfg: Option<&PathBuf>, src: &str, dst: &str) -> common::Run {
    let mut args = vec!["import"];
    if let Some(c) = cfg {
        args.extend(["--config", c.to_str().unwrap()]);
    }
    args.extend([src, dst]);
    regmirror(&args).await
}

/// The run failed (exit 1) with `needle` in its error output.
#[track_caller]
fn fails_with(run: &common::Run, needle: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        run.stderr
    );
}

/// `regmirror import [--config CFG] FROM/team/app:1 TO/mirror/app:1`.
async fn import_app(cfg: Option<&PathBuf>, from: &str, to: &str) -> common::Run {
    import(
        cfg,
        &format!("{from}/team/app:1"),
        &format!("{to}/mirror/app:1"),
    )
    .await
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A handler for a front that requires Basic credentials on every `/v2/`
/// request, plays `attack` first, and forwards the rest to the real registry.
fn basic_front(
    user: &str,
    pass: &str,
    attack: impl Fn(&Recorded) -> Option<Answer> + Send + Sync + 'static,
) -> Box<dyn Fn(&Recorded) -> Answer + Send + Sync> {
    let expected = basic(user, pass);
    Box::new(move |r: &Recorded| {
        if let Some(a) = attack(r) {
            return a;
        }
        if r.header("authorization") != Some(expected.as_str()) {
            return Answer::Respond(respond(
                401,
                &[("www-authenticate", "Basic realm=\"front\"")],
                "",
            ));
        }
        Answer::Forward
    })
}

fn registry_table(host: &str, user: &str, pass: &str) -> String {
    format!("[[registry]]\nhost = \"{host}\"\nusername = \"{user}\"\npassword = \"{pass}\"\n\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_tags_that_break_the_grammar_are_skipped_and_nothing_leaves_the_mirror() {
    let (src, digest) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let victim = ImageSet::image("malicious/victim", "linux/amd64", Format::Oci);
    push(&dst, "mirror/victim", "latest", victim.clone())
        .await
        .unwrap();
    let setup = logged_so_far(&dst).await;
    assert!(setup > 0, "the access log is read");
    // The log shows the first five rejected tags as examples.
    let evil_tags = [
        "../../victim/manifests/latest".to_string(),
        "ok\nINFO forged log line".to_string(),
        "\u{1b}[31mred\u{1b}[0m".to_string(),
        "x".repeat(5000),
        "a%2Fb".to_string(),
        "../victim".to_string(),
        "a?b=c".to_string(),
        "a#b".to_string(),
        ".hidden".to_string(),
    ];
    let listed: Vec<String> = std::iter::once("1".to_string())
        .chain(evil_tags.iter().cloned())
        .collect();
    let list = serde_json::json!({"name": "team/app", "tags": listed}).to_string();
    let front = MaliciousServer::start(Some(&src.base_url()), move |_| {
        Box::new(move |r: &Recorded| {
            if r.path() == "/v2/team/app/tags/list" {
                return Answer::Respond(respond(
                    200,
                    &[("content-type", "application/json")],
                    list.clone(),
                ));
            }
            Answer::Forward
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "m.toml",
        &format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
            front.host(),
            dst.host()
        ),
    );
    let run = regmirror(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let m = &report["mirrors"][0];
    assert_eq!(m["invalid_tags"], evil_tags.len(), "{m}");
    assert_eq!(m["images"], 1, "{m}");
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{report}");
    assert_eq!(images[0]["result"], "copied", "{report}");
    assert_eq!(images[0]["target_digest"], digest.as_str());

    // The real target saw nothing outside the mirror's repository, and the
    // victim's tag is where it was.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        outside(&dst, "mirror/app", setup),
        Vec::<(String, String)>::new()
    );
    let (_, bytes) = Pusher::for_registry(&dst)
        .get_manifest("mirror/victim", "latest")
        .await
        .unwrap();
    assert_eq!(common::sha256_digest(&bytes), victim.digest());
    // Logged once, escaped: no raw escape sequence, no forged line.
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("INFO forged")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("u{1b}[31mred"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ok\\\\u{a}INFO forged") || run.stderr.contains("ok\\u{a}INFO forged"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("break the tag grammar").count(), 1);
    assert!(
        run.stderr.len() < 20_000,
        "a 5000-character tag is cut in logs"
    );

    // The text report says so too.
    let text = regmirror(&["sync", "--config", cfg.to_str().unwrap()]).await;
    assert!(
        text.stdout.contains(&format!(
            "skipped {} listed tags that break the tag grammar",
            evil_tags.len()
        )),
        "{}",
        text.stdout
    );

    // The metric, through the library.
    let client = regmirror::registry::Client::new(Default::default()).unwrap();
    let repo =
        regmirror::registry::Reference::parse_repository(&format!("{}/team/app", front.host()))
            .unwrap();
    let listing = client.list_tags_checked(&repo).await.unwrap();
    assert_eq!(listing.tags, vec!["1"]);
    assert_eq!(listing.invalid, evil_tags.len());
    let metrics = regmirror::metrics::render();
    let line = format!(
        "regmirror_invalid_tags_total{{registry=\"{}\"}} {}",
        front.host(),
        evil_tags.len()
    );
    assert!(metrics.contains(&line), "{line} missing in:\n{metrics}");
}

/// A source front (user `alice`, password `pass`) that redirects every blob
/// GET with `status` to `to` + the blob's path.
async fn redirecting_front(
    src: &TestRegistry,
    pass: &str,
    status: u16,
    to: String,
) -> MaliciousServer {
    let pass = pass.to_string();
    MaliciousServer::start(Some(&src.base_url()), move |_| {
        basic_front("alice", &pass, move |r| {
            (r.method == "GET" && r.path().contains("/blobs/sha256:")).then(|| {
                let loc = format!("{to}{}?signature=abc", r.path());
                Answer::Respond(respond(status, &[("location", &loc)], ""))
            })
        })
    })
    .await
}

/// `regmirror import FRONT/team/app:1 DST/mirror/app:1` with `alice`'s password for the front.
async fn import_with_password(
    front: &MaliciousServer,
    pass: &str,
    dst: &TestRegistry,
) -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "r.toml",
        &registry_table(&front.host(), "alice", pass),
    );
    import_app(Some(&cfg), &front.host(), &dst.host()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_redirected_to_another_origin_are_fetched_without_credentials() {
    let (src, digest) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    // The "storage backend": another origin, serving blobs from the real source.
    let cdn = MaliciousServer::start(Some(&src.base_url()), |_| {
        Box::new(|_: &Recorded| Answer::Forward)
    })
    .await;
    let front = redirecting_front(&src, "src-pass-7f3", 307, cdn.base_url()).await;
    let run = import_with_password(&front, "src-pass-7f3", &dst).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, bytes) = Pusher::for_registry(&dst)
        .get_manifest("mirror/app", "1")
        .await
        .unwrap();
    assert_eq!(common::sha256_digest(&bytes), digest);
    let cdn_requests = cdn.requests();
    assert!(!cdn_requests.is_empty(), "blobs came through the redirect");
    assert_eq!(
        cdn.requests_with_credentials(&["src-pass-7f3", "alice"])
            .len(),
        0,
        "{cdn_requests:?}"
    );
    assert!(
        front
            .requests()
            .iter()
            .any(|r| r.header("authorization").is_some()),
        "the source itself did get its credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_a_redirect_target_is_an_error_never_a_token_request() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    for challenge in ["bearer", "basic"] {
        let thief = MaliciousServer::start(None, move |base| {
            let realm = format!("Bearer realm=\"{base}/token\",service=\"thief\"");
            Box::new(move |r: &Recorded| {
                let h = if challenge == "bearer" {
                    realm.clone()
                } else {
                    "Basic realm=\"thief\"".to_string()
                };
                if r.path() == "/token" {
                    return Answer::Respond(respond(200, &[], r#"{"token":"stolen"}"#));
                }
                Answer::Respond(respond(401, &[("www-authenticate", &h)], ""))
            })
        })
        .await;
        let front = redirecting_front(
            &src,
            "src-pass-9k1",
            302,
            format!("{}/steal", thief.base_url()),
        )
        .await;
        let run = import_with_password(&front, "src-pass-9k1", &dst).await;
        assert_eq!(run.code, 1, "{challenge}: {}", run.stderr);
        assert!(
            run.stderr.contains("another origin") && run.stderr.contains("asked for credentials"),
            "{challenge}: {}",
            run.stderr
        );
        let seen = thief.requests();
        assert!(!seen.is_empty(), "{challenge}: the redirect was followed");
        assert!(
            seen.iter().all(|r| r.path() != "/token"),
            "{challenge}: no token request: {seen:?}"
        );
        assert_eq!(
            thief
                .requests_with_credentials(&["src-pass-9k1", "alice"])
                .len(),
            0,
            "{challenge}: {seen:?}"
        );
        assert!(
            !Pusher::for_registry(&dst)
                .manifest_exists("mirror/app", "1")
                .await
                .unwrap(),
            "{challenge}: nothing was published"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_service_redirects_are_never_followed() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let thief = MaliciousServer::start(None, |_| {
        Box::new(|_: &Recorded| Answer::Respond(respond(200, &[], r#"{"token":"x"}"#)))
    })
    .await;
    let thief_base = thief.base_url();
    let front = MaliciousServer::start(Some(&src.base_url()), move |base| {
        let challenge = format!("Bearer realm=\"{base}/token\",service=\"front\"");
        Box::new(move |r: &Recorded| {
            if r.path() == "/token" {
                let loc = format!("{thief_base}/collect");
                return Answer::Respond(respond(307, &[("location", &loc)], ""));
            }
            Answer::Respond(respond(401, &[("www-authenticate", &challenge)], ""))
        })
    })
    .await;
    for creds in [
        "username = \"alice\"\nidentity_token = \"refresh-secret-q8\"\n",
        "username = \"alice\"\npassword = \"pw-secret-q8\"\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            &dir,
            "r.toml",
            &format!("[[registry]]\nhost = \"{}\"\n{creds}", front.host()),
        );
        let run = import_app(Some(&cfg), &front.host(), &dst.host()).await;
        assert_eq!(run.code, 1, "{creds}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("does not follow token-service redirects"),
            "{creds}: {}",
            run.stderr
        );
    }
    assert_eq!(thief.requests().len(), 0, "{:?}", thief.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_locations_outside_the_repository_or_origin_never_get_credentials_or_writes() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let thief = MaliciousServer::start(None, |_| {
        Box::new(|_: &Recorded| Answer::Respond(respond(404, &[], "")))
    })
    .await;
    let thief_base = thief.base_url();
    for (name, location) in [
        (
            "same origin, other repository",
            "/v2/victim/blobs/uploads/x1".to_string(),
        ),
        (
            "same origin, encoded traversal",
            "/v2/mirror/app/blobs/uploads/..%2F..%2Fvictim".to_string(),
        ),
        (
            "other origin",
            format!("{thief_base}/v2/mirror/app/blobs/uploads/x2"),
        ),
    ] {
        let loc = location.clone();
        let front = MaliciousServer::start(Some(&dst.base_url()), move |_| {
            basic_front("bob", "dst-pass-4z", move |r| {
                (r.method == "POST"
                    && r.path() == "/v2/mirror/app/blobs/uploads/"
                    && r.header("authorization").is_some())
                .then(|| Answer::Respond(respond(202, &[("location", &loc)], "")))
            })
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            &dir,
            "r.toml",
            &registry_table(&front.host(), "bob", "dst-pass-4z"),
        );
        let run = import_app(Some(&cfg), &src.host(), &front.host()).await;
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(
            front
                .requests()
                .iter()
                .all(|r| r.path() == "/v2/" || r.path().starts_with("/v2/mirror/app/")),
            "{name}: {:?}",
            front.requests()
        );
        if name.starts_with("same origin") {
            assert!(run.stderr.contains("Location"), "{name}: {}", run.stderr);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        outside(&dst, "mirror/app", 0),
        Vec::<(String, String)>::new()
    );
    assert!(logged_so_far(&dst).await > 0, "the access log is read");
    assert_eq!(
        thief
            .requests_with_credentials(&["dst-pass-4z", "bob"])
            .len(),
        0,
        "{:?}",
        thief.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_headers_outside_the_repository_or_origin_are_refused_or_sent_bare() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let thief = MaliciousServer::start(None, |_| {
        Box::new(|_: &Recorded| {
            Answer::Respond(respond(200, &[], r#"{"name":"team/app","tags":["1"]}"#))
        })
    })
    .await;
    let thief_base = thief.base_url();
    for (name, link) in [
        (
            "other repository",
            "</v2/victim/tags/list?last=1>; rel=\"next\"".to_string(),
        ),
        (
            "other origin",
            format!("<{thief_base}/v2/team/app/tags/list?last=1>; rel=\"next\""),
        ),
    ] {
        let front = MaliciousServer::start(Some(&src.base_url()), move |_| {
            let link = link.clone();
            basic_front("carol", "src-pass-l1nk", move |r| {
                (r.path() == "/v2/team/app/tags/list" && r.header("authorization").is_some()).then(
                    || {
                        Answer::Respond(respond(
                            200,
                            &[("link", &link)],
                            r#"{"name":"team/app","tags":["1"]}"#,
                        ))
                    },
                )
            })
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            &dir,
            "m.toml",
            &format!(
                "{}[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
                registry_table(&front.host(), "carol", "src-pass-l1nk"),
                front.host(),
                dst.host()
            ),
        );
        let run = regmirror(&["sync", "--config", cfg.to_str().unwrap()]).await;
        assert!(
            front
                .requests()
                .iter()
                .all(|r| !r.path().starts_with("/v2/victim")),
            "{name}: {:?}",
            front.requests()
        );
        if name == "other repository" {
            assert_eq!(run.code, 1, "{name}: {}", run.stderr);
            assert!(run.stderr.contains("Link"), "{name}: {}", run.stderr);
        } else {
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        }
    }
    assert!(!thief.requests().is_empty(), "the foreign page was fetched");
    assert_eq!(
        thief
            .requests_with_credentials(&["src-pass-l1nk", "carol"])
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_endless_answers_stop_at_their_caps() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;

    // An endless token answer.
    let front = MaliciousServer::start(Some(&src.base_url()), |base| {
        let challenge = format!("Bearer realm=\"{base}/token\",service=\"front\"");
        Box::new(move |r: &Recorded| {
            if r.path() == "/token" {
                return Answer::Respond(respond(200, &[], endless_body(&[b'a'; 8192])));
            }
            Answer::Respond(respond(401, &[("www-authenticate", &challenge)], ""))
        })
    })
    .await;
    let run = import_app(None, &front.host(), &dst.host()).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than 65536 bytes") && run.stderr.contains("token"),
        "{}",
        run.stderr
    );

    // An endless tag-list page.
    let front = MaliciousServer::start(None, |_| {
        Box::new(|r: &Recorded| {
            if r.path().ends_with("/tags/list") {
                let head = bytes::Bytes::from_static(br#"{"name":"team/app","tags":["#);
                let _ = head;
                return Answer::Respond(respond(200, &[], endless_body(br#""aaaaaaaaaaaaaaa","#)));
            }
            Answer::Respond(respond(404, &[], ""))
        })
    })
    .await;
    let run = regmirror(&["tags", &format!("{}/team/app", front.host())]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("over the limit of 4194304") && run.stderr.contains(&front.host()),
        "{}",
        run.stderr
    );

    // Pages of 1000 tags, without end: stopped by max_tags.
    let front = MaliciousServer::start(None, |_| {
        Box::new(|r: &Recorded| {
            let page: usize = r
                .uri
                .split("last=t")
                .nth(1)
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse().ok())
                .map(|p: usize| p + 1)
                .unwrap_or(0);
            let tags: Vec<String> = (0..1000).map(|i| format!("t{page}-{i}")).collect();
            let link = format!("</v2/team/app/tags/list?n=1000&last=t{page}-999>; rel=\"next\"");
            let body = serde_json::json!({"name": "team/app", "tags": tags}).to_string();
            Answer::Respond(respond(200, &[("link", &link)], body))
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "m.toml",
        &format!(
            "[[registry]]\nhost = \"{0}\"\nmax_tags = 3000\n\n[[mirror]]\nsource = \"{0}/team/app\"\ntarget = \"{1}/mirror/app\"\n",
            front.host(),
            dst.host()
        ),
    );
    let run = regmirror(&["sync", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than 3000 tags") && run.stderr.contains("max_tags"),
        "{}",
        run.stderr
    );
    assert!(front.requests().len() <= 4, "{}", front.requests().len());

    // Manifests per image, against a real registry: a 3-platform index with
    // a cap of 2 manifests.
    let index = ImageSet::multi_arch(
        "malicious/wide",
        &["linux/amd64", "linux/arm64", "linux/s390x"],
        false,
        Format::Oci,
    );
    push(&src, "team/wide", "1", index.to_node()).await.unwrap();
    let cfg = write(
        &dir,
        "r.toml",
        &format!(
            "[[registry]]\nhost = \"{}\"\nmax_manifests_per_image = 2\n",
            src.host()
        ),
    );
    let run = import(
        Some(&cfg),
        &format!("{}/team/wide:1", src.host()),
        &format!("{}/mirror/wide:1", dst.host()),
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than 2 manifests for one image")
            && run.stderr.contains("max_manifests_per_image"),
        "{}",
        run.stderr
    );
    assert!(
        !Pusher::for_registry(&dst)
            .manifest_exists("mirror/wide", "1")
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_stalling_servers_end_at_their_deadline() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    type Attack = fn(&Recorded) -> Option<Answer>;
    let attacks: [(&str, Attack, &str); 3] = [
        (
            "silent",
            |r| r.path().contains("/manifests/").then_some(Answer::Silent),
            "gave no answer after 2s",
        ),
        (
            "trickling manifest",
            |r| {
                (r.method == "GET" && r.path().contains("/manifests/")).then(|| {
                    Answer::Respond(respond(
                        200,
                        &[("content-type", MANIFEST_TYPE)],
                        trickling_body(b" ", Duration::from_millis(200)),
                    ))
                })
            },
            "did not send the whole manifest after 2s",
        ),
        (
            "stalling blob",
            |r| {
                (r.method == "GET" && r.path().contains("/blobs/sha256:")).then(|| {
                    Answer::Respond(respond(
                        200,
                        &[],
                        stalling_body(bytes::Bytes::from_static(b"partial")),
                    ))
                })
            },
            "no byte of the blob arrived after 2s",
        ),
    ];
    for (name, attack, expected) in attacks {
        let front = MaliciousServer::start(Some(&src.base_url()), move |_| {
            Box::new(move |r: &Recorded| attack(r).unwrap_or(Answer::Forward))
        })
        .await;
        let started = Instant::now();
        let run = regmirror(&[
            "import",
            "--timeout",
            "2s",
            &format!("{}/team/app:1", front.host()),
            &format!("{}/mirror/app:{}", dst.host(), name.replace(' ', "-")),
        ])
        .await;
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name}: ended well before the 60 s default"
        );
    }

    // A target that takes a blob upload and never answers it.
    let target = MaliciousServer::start(Some(&dst.base_url()), |_| {
        Box::new(|r: &Recorded| {
            if r.method == "PUT" && r.path().contains("/blobs/uploads/") {
                Answer::Silent
            } else {
                Answer::Forward
            }
        })
    })
    .await;
    let started = Instant::now();
    let run = regmirror(&[
        "import",
        "--timeout",
        "2s",
        &format!("{}/team/app:1", src.host()),
        &format!("{}/mirror/app:silent-target", target.host()),
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("did not answer the finished upload after 2s"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_mirror_holds_the_shared_copy_limit_only_until_its_deadline() {
    let (src, digest) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    // The hung source answers HEADs (so its copy starts and takes the only
    // copy permit), then never answers the manifest GET.
    let hung = MaliciousServer::start(Some(&src.base_url()), |_| {
        Box::new(|r: &Recorded| {
            if r.method == "GET" && r.path().contains("/manifests/") {
                Answer::Silent
            } else {
                Answer::Forward
            }
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "m.toml",
        &format!(
            "[defaults]\nconcurrency = 1\ntimeout_seconds = 3\n\n\
             [[mirror]]\nname = \"hung\"\nsource = \"{}/team/app:1\"\ntarget = \"{1}/mirror/hung:1\"\n\n\
             [[mirror]]\nname = \"healthy\"\nsource = \"{2}/team/app:1\"\ntarget = \"{1}/mirror/healthy:1\"\n",
            hung.host(),
            dst.host(),
            src.host()
        ),
    );
    let started = Instant::now();
    let run = regmirror(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 3, "partial: {}\n{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let by_name = |n: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["mirror"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("healthy")["result"], "copied");
    assert_eq!(by_name("healthy")["target_digest"], digest.as_str());
    assert_eq!(by_name("hung")["result"], "failed");
    assert!(
        by_name("hung")["error"]
            .as_str()
            .unwrap()
            .contains("after 3s"),
        "{}",
        by_name("hung")
    );
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_token_lifetimes_and_rates_do_not_panic() {
    let (src, digest) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    for expires_in in ["18446744073709551615", "1e300", "-5", "0"] {
        let front = MaliciousServer::start(Some(&src.base_url()), move |base| {
            let challenge = format!("Bearer realm=\"{base}/token\",service=\"front\"");
            let body = format!(r#"{{"token":"tok-1","expires_in":{expires_in}}}"#);
            Box::new(move |r: &Recorded| {
                if r.path() == "/token" {
                    return Answer::Respond(respond(200, &[], body.clone()));
                }
                if r.header("authorization") != Some("Bearer tok-1") {
                    return Answer::Respond(respond(401, &[("www-authenticate", &challenge)], ""));
                }
                Answer::Forward
            })
        })
        .await;
        // The harness fails the test when the binary prints a panic.
        let run = import_app(None, &front.host(), &dst.host()).await;
        assert_eq!(run.code, 0, "expires_in {expires_in}: {}", run.stderr);
    }
    let (_, bytes) = Pusher::for_registry(&dst)
        .get_manifest("mirror/app", "1")
        .await
        .unwrap();
    assert_eq!(common::sha256_digest(&bytes), digest);

    let dir = tempfile::tempdir().unwrap();
    for rps in ["1e-300", "1e300", "-1", "nan"] {
        let cfg = write(
            &dir,
            "c.toml",
            &format!(
                "[[registry]]\nhost = \"{}\"\nrequests_per_second = {rps}\n\n[[mirror]]\nsource = \"{0}/team/app\"\ntarget = \"{}/mirror/app\"\n",
                src.host(),
                dst.host()
            ),
        );
        let run = regmirror(&["check", "--config", cfg.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "rps {rps}: {}", run.stderr);
        assert!(run.stderr.contains("requests_per_second"), "{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_or_unconfirmed_manifest_digests_are_reported_honestly() {
    let (src, digest) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let other = format!("sha256:{}", "ab".repeat(32));
    let sha512 = format!("sha512:{}", "cd".repeat(64));
    type Tamper = Box<dyn Fn(&Recorded) -> Option<Answer> + Send + Sync>;
    let is_put = |r: &Recorded| r.method == "PUT" && r.path().contains("/manifests/");
    let cases: Vec<(&str, Tamper, Option<&str>)> = vec![
        (
            "rewritten",
            Box::new(move |r| {
                let other = other.clone();
                is_put(r).then(|| {
                    Answer::ForwardThen(Box::new(move |h| {
                        h.insert("docker-content-digest", other.parse().unwrap());
                    }))
                })
            }),
            Some("the registry rewrote the manifest"),
        ),
        (
            "no-digest-header",
            Box::new(move |r| {
                is_put(r).then(|| {
                    Answer::ForwardThen(Box::new(|h| {
                        h.remove("docker-content-digest");
                    }))
                })
            }),
            None,
        ),
        (
            "sha512-header",
            Box::new(move |r| {
                let sha512 = sha512.clone();
                is_put(r).then(|| {
                    Answer::ForwardThen(Box::new(move |h| {
                        h.insert("docker-content-digest", sha512.parse().unwrap());
                    }))
                })
            }),
            None,
        ),
        (
            "accepted-not-stored",
            Box::new(move |r| is_put(r).then(|| Answer::Respond(respond(201, &[], "")))),
            Some("does not serve"),
        ),
    ];
    for (name, tamper, error) in cases {
        let front = MaliciousServer::start(Some(&dst.base_url()), move |_| {
            Box::new(move |r: &Recorded| tamper(r).unwrap_or(Answer::Forward))
        })
        .await;
        let run = import(
            None,
            &format!("{}/team/app:1", src.host()),
            &format!("{}/mirror/{name}:1", front.host()),
        )
        .await;
        match error {
            Some(e) => {
                assert_eq!(run.code, 1, "{name}: {}", run.stderr);
                assert!(run.stderr.contains(e), "{name}: {}", run.stderr);
                assert!(
                    run.stderr.contains("tag may have moved"),
                    "{name}: {}",
                    run.stderr
                );
            }
            None => {
                assert_eq!(run.code, 0, "{name}: {}", run.stderr);
                let confirmed = front.requests().iter().any(|r| {
                    r.method == "HEAD"
                        && r.path() == format!("/v2/mirror/{name}/manifests/{digest}")
                });
                assert!(
                    confirmed,
                    "{name}: confirmed by a HEAD by digest: {:?}",
                    front.requests()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_text_is_escaped_and_secret_config_values_are_never_echoed() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let front = MaliciousServer::start(Some(&src.base_url()), |_| {
        Box::new(|r: &Recorded| {
            if r.path().contains("/manifests/") {
                let body = serde_json::json!({"errors": [{"code": "DENIED\u{1b}[2J",
                    "message": "no\nERROR forged line \u{1b}[31m"}]})
                .to_string();
                return Answer::Respond(respond(
                    403,
                    &[("content-type", "application/json")],
                    body,
                ));
            }
            Answer::Forward
        })
    })
    .await;
    let run = import_app(None, &front.host(), &dst.host()).await;
    fails_with(&run, "HTTP 403");
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("ERROR forged")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\\u{1b}[31m"), "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    for secret in [
        "password = 98765432",
        "identity_token = 98765432",
        "password = [98765432]",
    ] {
        let cfg = write(
            &dir,
            "c.toml",
            &format!("[[registry]]\nhost = \"r.example\"\nusername = \"u\"\n{secret}\n"),
        );
        let run = regmirror(&["check", "--config", cfg.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "{secret}: {}", run.stderr);
        assert!(!run.stderr.contains("98765432"), "{secret}: {}", run.stderr);
        assert!(run.stderr.contains("secret"), "{secret}: {}", run.stderr);
    }
    let cfg = write(
        &dir,
        "inline.toml",
        "registry = [{ host = \"r.example\", username = \"u\", password = 98765432 }]\n",
    );
    let run = regmirror(&["check", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("98765432"), "{}", run.stderr);
}

/// A `regmirror serve` child, killed on drop.
struct Serve {
    child: tokio::process::Child,
    addr: String,
}

impl Serve {
    async fn start(config: &str, dir: &tempfile::TempDir) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = write(
            dir,
            "serve.toml",
            &format!("[server]\nlisten = \"{addr}\"\nshutdown_grace_seconds = 2\n\n{config}"),
        );
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting regmirror serve");
        let s = Serve { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.get("/healthz").await.is_none() {
            assert!(Instant::now() < deadline, "serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }

    async fn get(&self, path: &str) -> Option<u16> {
        let client = common::http_client(None);
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            client.get(format!("http://{}{path}", self.addr)).send(),
        )
        .await
        .ok()?
        .ok()?;
        Some(r.status().as_u16())
    }

    /// SIGTERM, then the exit status and how long the exit took.
    async fn terminate(mut self) -> (Option<i32>, Duration, String) {
        let pid = self.child.id().expect("serve pid") as libc::pid_t;
        let started = Instant::now();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("serve exited after SIGTERM")
            .unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt as _;
            let _ = e.read_to_string(&mut stderr).await;
        }
        (status.code(), started.elapsed(), stderr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_survives_idle_and_slow_clients() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &format!(
            "[[mirror]]\nsource = \"{}/team/app:1\"\ntarget = \"{}/mirror/app:1\"\nschedule = \"0 0 1 1 *\"\n",
            src.host(),
            dst.host()
        ),
        &dir,
    )
    .await;
    // 150 idle sockets, more than the connection cap, and one slow client
    // that never finishes its headers.
    let mut idle = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = tokio::net::TcpStream::connect(&serve.addr).await {
            idle.push(s);
        }
    }
    let mut slow = tokio::net::TcpStream::connect(&serve.addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = slow
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await;
    // The server closes the slow client after its header-read timeout.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a client that never finishes its headers is closed: {closed:?}"
    );
    // Health answers again while the idle sockets are still open on our side.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if serve.get("/healthz").await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz never answered again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = common::http_client(None)
        .get(format!("http://{}/metrics", serve.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rejected: f64 = metrics
        .lines()
        .find(|l| l.starts_with("regmirror_http_connections_rejected_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the rejection counter is exported");
    assert!(
        rejected >= 80.0,
        "connections beyond the cap were refused: {rejected}"
    );
    drop(idle);
    let (code, took, _) = serve.terminate().await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_honoured_within_the_grace_period_whatever_a_registry_does() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let hung = MaliciousServer::start(Some(&src.base_url()), |_| {
        Box::new(|r: &Recorded| {
            if r.path().contains("/manifests/") {
                Answer::Silent
            } else {
                Answer::Forward
            }
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &format!(
            "[defaults]\ntimeout_seconds = 600\n\n[[mirror]]\nsource = \"{}/team/app:1\"\ntarget = \"{}/mirror/app:1\"\n",
            hung.host(),
            dst.host()
        ),
        &dir,
    )
    .await;
    // Wait until the run is stuck on the silent registry.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !hung
        .requests()
        .iter()
        .any(|r| r.path().contains("/manifests/"))
    {
        assert!(
            Instant::now() < deadline,
            "the run never reached the registry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        serve.get("/readyz").await,
        Some(200),
        "ready while the first run hangs"
    );
    let (code, took, stderr) = serve.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        took < Duration::from_secs(12),
        "exit within the 2 s grace period (plus slack), not the registry's 600 s: {took:?}\n{stderr}"
    );
    assert!(stderr.contains("abandoned"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registries_never_downgrade_to_plain_http() {
    let (src, _) = source_with_image().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let thief = MaliciousServer::start(None, |_| {
        Box::new(|_: &Recorded| Answer::Respond(respond(200, &[], "")))
    })
    .await;
    let ca = common::TestCa::new("regmirror malicious CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(&dir, "ca.pem", ca.cert_pem());
    let tls_table = |host: &str| {
        format!(
            "[[registry]]\nhost = \"{host}\"\ntls = \"verify\"\nca_file = \"{}\"\nusername = \"alice\"\npassword = \"tls-pass-d0wn\"\n\n",
            ca_file.display()
        )
    };

    // A blob redirect from an HTTPS source to plain HTTP.
    let thief_base = thief.base_url();
    let source = MaliciousServer::start_tls(&ca, Some(&src.base_url()), move |_| {
        basic_front("alice", "tls-pass-d0wn", move |r| {
            (r.method == "GET" && r.path().contains("/blobs/sha256:")).then(|| {
                let loc = format!("{thief_base}{}", r.path());
                Answer::Respond(respond(302, &[("location", &loc)], ""))
            })
        })
    })
    .await;
    assert!(source.base_url().starts_with("https://"));
    let cfg = write(&dir, "src.toml", &tls_table(&source.host()));
    let run = import_app(Some(&cfg), &source.host(), &dst.host()).await;
    fails_with(&run, "downgrades from https to plain http");
    assert!(
        source
            .requests()
            .iter()
            .any(|r| r.header("authorization").is_some()),
        "the HTTPS source itself was used with its credentials"
    );

    // An upload Location from an HTTPS target to plain HTTP.
    let thief_base = thief.base_url();
    let target = MaliciousServer::start_tls(&ca, Some(&dst.base_url()), move |_| {
        basic_front("alice", "tls-pass-d0wn", move |r| {
            (r.method == "POST" && r.path().ends_with("/blobs/uploads/")).then(|| {
                let loc = format!("{thief_base}{}x", r.path());
                Answer::Respond(respond(202, &[("location", &loc)], ""))
            })
        })
    })
    .await;
    let cfg = write(&dir, "dst.toml", &tls_table(&target.host()));
    let run = import_app(Some(&cfg), &src.host(), &target.host()).await;
    fails_with(&run, "downgrades from https to plain http");
    assert!(
        thief.requests().is_empty(),
        "nothing went out in clear text: {:?}",
        thief.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_protocol_failures_are_reported_once_and_not_retried() {
    // A plain-HTTP server where HTTPS is configured: the TLS layer gets bytes
    // that are not TLS, which no retry can fix.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "r.toml",
        &format!("[[registry]]\nhost = \"{host}\"\ntls = \"verify\"\n"),
    );
    let run = regmirror(&[
        "inspect",
        "--config",
        cfg.to_str().unwrap(),
        &format!("{host}/team/app:1"),
    ])
    .await;
    fails_with(&run, "TLS failed");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not retried: {}",
        run.stderr
    );
}
