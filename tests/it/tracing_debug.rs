//! `--debug` through the binary: every registry request and token request
//! of a token-auth run is logged (counted against a counting proxy and the
//! token server's own count), with the auth challenge, and no secret
//! appears in stderr in text or JSON; query-string secrets of a redirect
//! are redacted; the default level logs regmirror's own events only, and
//! JSON log fields do not collide with tracing's `target`.

use base64::Engine as _;

use crate::common::malicious::respond;
use crate::common::{
    Answer, FaultPlan, Format, ImageSet, MaliciousServer, Recorded, RegistryOptions, TestProxy,
    TestRegistry, TokenIssuer, TokenIssuerOptions, push, regmirror, regmirror_env,
};

const USER: &str = "tracebot";
const PASSWORD: &str = "Tr4cePass-Distinctive-e83f";

/// Lines of `stderr` that log one registry request (text or JSON).
fn request_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("registry request: "))
        .collect()
}

/// `METHOD URL-without-query` of a request line.
fn method_and_path(line: &str) -> String {
    let rest = line.split("registry request: ").nth(1).unwrap_or("");
    let mut words = rest.split_whitespace();
    let method = words.next().unwrap_or("");
    let url = words.next().unwrap_or("").split('?').next().unwrap_or("");
    format!("{method} {url}")
}

/// Every form of a secret that must not show: the password, its base64,
/// the Basic header's base64 of `user:password`, and the header segment
/// every JWT of `issuer` starts with (so no issued bearer token).
fn secret_forms(issuer: &TokenIssuer) -> Vec<(&'static str, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let minted = issuer.mint(&["repository:team/app:pull"]);
    vec![
        ("password", PASSWORD.to_string()),
        ("base64 of the password", b64(PASSWORD)),
        ("Basic header value", b64(&format!("{USER}:{PASSWORD}"))),
        (
            "issued bearer token header",
            minted.split('.').next().unwrap().to_string(),
        ),
    ]
}

fn assert_no_secret(what: &str, text: &str, forms: &[(&str, String)]) {
    for (name, form) in forms {
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(form)).take(3).collect();
        assert!(hits.is_empty(), "{what} contains the {name}:\n{hits:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_every_request_of_a_token_auth_sync_and_no_secret() {
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        user: Some((USER.to_string(), PASSWORD.to_string())),
        ..Default::default()
    })
    .await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let image = ImageSet::multi_arch("trace/app", &["linux/amd64"], false, Format::Oci);
    push(&reg, "team/app", "v1", image.to_node()).await.unwrap();
    // Every request regmirror sends to the registry passes this proxy,
    // which counts them; token requests go to the token server directly.
    let proxy = TestProxy::start(&reg.base_url(), FaultPlan::none()).await;
    let h = proxy.host();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[registry]]\nhost = \"{h}\"\nusername = \"{USER}\"\npassword_env = \"TRACE_PW\"\n\n\
             [[mirror]]\nsource = \"{h}/team/app:v1\"\ntarget = \"{h}/mirror/app\"\n"
        ),
    )
    .unwrap();
    let forms = secret_forms(&issuer);
    for format in ["text", "json"] {
        proxy.reset();
        issuer.reset_counters();
        let run = regmirror_env(
            &[
                "--debug",
                "--log-format",
                format,
                "sync",
                "--config",
                config.to_str().unwrap(),
            ],
            &[("TRACE_PW", PASSWORD)],
        )
        .await;
        assert_eq!(run.code, 0, "{format}: {}\n{}", run.stdout, run.stderr);
        let lines = request_lines(&run.stderr);
        let sent = proxy.requests();
        assert_eq!(
            lines.len(),
            sent.len(),
            "{format}: one debug line per request the registry got ({sent:?}):\n{}",
            run.stderr
        );
        // The lines name the same requests (method and path) as the proxy saw.
        let mut logged: Vec<String> = lines.iter().map(|l| method_and_path(l)).collect();
        let mut seen: Vec<String> = sent
            .iter()
            .map(|(m, p)| format!("{m} http://{h}{p}"))
            .collect();
        logged.sort();
        seen.sort();
        assert_eq!(logged, seen, "{format}");
        let tokens = run
            .stderr
            .lines()
            .filter(|l| l.contains("token request: "))
            .count();
        assert!(issuer.token_requests() > 0, "the run fetched tokens");
        assert_eq!(tokens, issuer.token_requests(), "{format}:\n{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("token request: GET {}?service=", issuer.realm())),
            "{format}: the token URL (service and scope, no secret) is shown:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("-> HTTP 401"), "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("auth challenge: bearer realm {}", issuer.realm())),
            "{format}:\n{}",
            run.stderr
        );
        assert_no_secret(&format!("stderr ({format})"), &run.stderr, &forms);
        assert_no_secret(&format!("stdout ({format})"), &run.stdout, &forms);
        if format == "json" {
            for line in &lines {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let f = &v["fields"];
                for key in ["method", "url", "status", "duration_ms", "attempt", "auth"] {
                    assert!(!f[key].is_null(), "{key} missing in {line}");
                }
            }
            assert!(
                lines.iter().any(|l| l.contains("\"auth\":\"bearer\"")),
                "requests with a token say so: {lines:#?}"
            );
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.contains("token request: ") && l.contains("\"auth\":\"basic\"")),
                "token requests name their grant in `auth`:\n{}",
                run.stderr
            );
        }
    }
}

/// A registry that stores blobs in S3 answers blob GETs with a redirect to
/// a presigned URL whose query holds the signature and the access key id
/// (distribution's `storage.redirect`, on by default for the s3 driver:
/// <https://distribution.github.io/distribution/about/configuration/#redirect>;
/// presigned URLs: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>).
/// `docker-registry` on a filesystem never redirects, so a front plays that
/// part, and the "storage" is another origin serving the real blobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_shows_redirects_by_host_and_redacts_query_secrets() {
    const SIGNATURE: &str = "Sig0123456789abcdefDistinctive";
    const KEY_ID: &str = "AKIADISTINCTIVEKEY77";
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("trace/redirect", "linux/amd64", Format::Oci);
    push(&src, "team/app", "1", image.clone()).await.unwrap();
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let storage = MaliciousServer::start(Some(&src.base_url()), |_| {
        Box::new(|_: &Recorded| Answer::Forward)
    })
    .await;
    let to = storage.base_url();
    let front = MaliciousServer::start(Some(&src.base_url()), move |_| {
        Box::new(move |r: &Recorded| {
            if r.method == "GET" && r.path().contains("/blobs/sha256:") {
                let loc = format!(
                    "{to}{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F20261207\
                     &X-Amz-Signature={SIGNATURE}",
                    r.path()
                );
                return Answer::Respond(respond(307, &[("location", &loc)], ""));
            }
            Answer::Forward
        })
    })
    .await;
    let run = regmirror(&[
        "--debug",
        "import",
        &format!("{}/team/app:1", front.host()),
        &format!("{}/mirror/app:1", dst_proxy.host()),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let blob_gets = storage.requests().len();
    assert!(blob_gets > 0, "blobs came through the redirect");
    let all = front.requests().len() + blob_gets + dst_proxy.requests().len();
    assert_eq!(request_lines(&run.stderr).len(), all, "{}", run.stderr);
    let redirects = run
        .stderr
        .lines()
        .filter(|l| l.contains(&format!("redirected the request to {}", "127.0.0.1")))
        .count();
    assert_eq!(redirects, blob_gets, "{}", run.stderr);
    assert!(
        run.stderr.contains("X-Amz-Signature=REDACTED")
            && run.stderr.contains("X-Amz-Credential=REDACTED"),
        "{}",
        run.stderr
    );
    for secret in [SIGNATURE, KEY_ID] {
        assert!(!run.stderr.contains(secret), "{secret}:\n{}", run.stderr);
    }
}

/// The JSON log lines of `stderr`.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_logs_are_regmirrors_own_and_fields_do_not_collide() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("trace/clean", "linux/amd64", Format::Oci);
    push(&src, "team/app", "1", image.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let sync = |level: Option<&'static str>, env: Option<&'static str>| {
        let mut args = vec!["--log-format", "json", "sync", "--config", cfg];
        if let Some(l) = level {
            args.extend(["--log-level", l]);
        }
        let envs: Vec<(&str, &str)> = env.map(|v| ("RUST_LOG", v)).into_iter().collect();
        async move { regmirror_env(&args, &envs).await }
    };
    let targets = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .map(|v| v["target"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // The default: every line is regmirror's own.
    let run = sync(None, None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = json_lines(&run.stderr);
    assert!(!lines.is_empty(), "info lines are logged");
    for t in targets(&lines) {
        assert!(
            t.starts_with("regmirror"),
            "a library's line: {t}\n{}",
            run.stderr
        );
    }
    // The image target is `target_ref`; `target` stays tracing's module path.
    let started = lines
        .iter()
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("mirror run started"))
        })
        .unwrap_or_else(|| panic!("no start line:\n{}", run.stderr));
    assert_eq!(
        started["fields"]["target_ref"],
        format!("{}/mirror/app", dst.host())
    );
    assert!(started["fields"]["target"].is_null(), "{started}");
    assert_eq!(started["target"], "regmirror::sync::run");
    assert_eq!(started["fields"]["images"], 1, "{started}");
    // Libraries' lines come when asked for: a bare level, or RUST_LOG.
    for (level, env) in [(Some("debug"), None), (None, Some("debug"))] {
        let run = sync(level, env).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let libs: Vec<String> = targets(&json_lines(&run.stderr))
            .into_iter()
            .filter(|t| !t.starts_with("regmirror"))
            .collect();
        assert!(!libs.is_empty(), "{level:?} {env:?}:\n{}", run.stderr);
    }
}
