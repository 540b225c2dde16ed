//! Config loading: the example file, and every error path naming the file,
//! the key and (where possible) the line.

use std::path::{Path, PathBuf};

use regmirror::sync::Selection;
use regmirror::sync::config::{Config, ConfigError, DEFAULT_SCHEDULE};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

/// Write `text` to a config file in a fresh directory and load it.
fn load(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mirror.toml");
    std::fs::write(&path, text).expect("write config");
    let r = Config::load(&path);
    (dir, r)
}

/// Load `text`, expect an error, and check it names the file, the key and the line.
fn expect_error(text: &str, key: &str, line: Option<usize>, needle: &str) -> ConfigError {
    let (_dir, r) = load(text);
    let e = r.expect_err("config should be rejected");
    let shown = e.to_string();
    assert!(
        shown.contains("mirror.toml"),
        "error does not name the file: {shown}"
    );
    assert!(
        shown.contains(key),
        "error does not name key {key:?}: {shown}"
    );
    assert!(
        shown.contains(needle),
        "error does not say {needle:?}: {shown}"
    );
    if let Some(l) = line {
        assert_eq!(e.line, Some(l), "wrong line in: {shown}");
        assert!(
            shown.contains(&format!("line {l}")),
            "line not shown: {shown}"
        );
    }
    e
}

const MIRROR: &str = "[[mirror]]\nsource = \"docker.io/library/nginx\"\ntarget = \"registry.example.com/mirror/nginx\"\n";

#[test]
fn example_config_loads() {
    let c = Config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.mirrors.len(), 2);
    assert_eq!(c.registries.len(), 2);
    assert_eq!(c.registries[0].host, "docker.io");
    assert_eq!(
        c.docker_config.as_deref(),
        Some(Path::new("/etc/regmirror/docker-config.json"))
    );
    assert_eq!(c.defaults.concurrency, 4);
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(c.server.shutdown_grace.as_secs(), 120);

    let nginx = &c.mirrors[0];
    assert_eq!(nginx.name, "nginx");
    assert_eq!(nginx.source.to_string(), "docker.io/library/nginx");
    assert_eq!(
        nginx.target.to_string(),
        "registry.example.com/mirror/nginx"
    );
    assert_eq!(nginx.schedule.pattern(), "*/30 * * * *");
    assert_eq!(
        nginx
            .platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    assert!(nginx.force);
    let Selection::Filtered { tags, filter } = &nginx.selection else {
        panic!("nginx should list and filter tags: {:?}", nginx.selection);
    };
    assert_eq!(tags, &["1.27", "latest"]);
    assert_eq!(filter.latest, Some(5));
    assert!(nginx.selection.needs_listing());

    let redis = &c.mirrors[1];
    assert_eq!(redis.name, "library/redis:7.4");
    assert!(matches!(&redis.selection, Selection::Tags(t) if t == &["7.4"]));
    assert!(!redis.selection.needs_listing());
    assert_eq!(redis.schedule.pattern(), DEFAULT_SCHEDULE);
    let (s, t) = redis.pair_for_tag("7.4").unwrap();
    assert_eq!(s.to_string(), "docker.io/library/redis:7.4");
    assert_eq!(t.to_string(), "registry.example.com/library/redis:7.4");
}

#[test]
fn example_config_documents_every_key() {
    // Each key of the example has a comment line directly above it (or a
    // commented-out example line documenting it).
    let text = std::fs::read_to_string(example_path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut first_seen = std::collections::HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            continue;
        }
        let key = t.split('=').next().unwrap().trim();
        if first_seen.insert(key.to_string()) {
            let commented_before = lines[..i].iter().any(|p| {
                p.trim_start()
                    .strip_prefix('#')
                    .is_some_and(|c| c.trim_start().starts_with(&format!("{key} =")))
            });
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#') || commented_before,
                "key {key:?} at line {} has no comment above it",
                i + 1
            );
        }
    }
    for key in [
        "docker_config",
        "schedule",
        "timezone",
        "platforms",
        "concurrency",
        "blob_concurrency",
        "jitter_seconds",
        "listen",
        "shutdown_grace_seconds",
        "host",
        "username",
        "password_env",
        "tls",
        "max_concurrent_requests",
        "requests_per_second",
        "name",
        "source",
        "target",
        "tags",
        "include",
        "exclude",
        "semver",
        "latest",
        "force",
    ] {
        assert!(first_seen.contains(key), "example lacks key {key}");
    }
}

#[test]
fn unreadable_file_is_named() {
    let e = Config::load(Path::new("/nonexistent-dir/regmirror.toml")).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("/nonexistent-dir/regmirror.toml") && s.contains("cannot read"),
        "{s}"
    );
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    expect_error(
        &format!("{MIRROR}tgas = [\"1\"]\n"),
        "mirror[1]",
        Some(4),
        "unknown field `tgas`",
    );
    expect_error(
        "[defaults]\nschedul = \"* * * * *\"\n",
        "defaults",
        Some(2),
        "unknown field `schedul`",
    );
    expect_error(
        "[server]\nport = 1\n",
        "server",
        Some(2),
        "unknown field `port`",
    );
    expect_error(
        "[[registry]]\nhost = \"a.io\"\npasword = \"x\"\n",
        "registry[1]",
        Some(3),
        "unknown field `pasword`",
    );
    expect_error(
        "dockerconfig = \"x\"\n",
        "mirror.toml",
        Some(1),
        "unknown field `dockerconfig`",
    );
    expect_error("[extra]\n", "mirror.toml", Some(1), "unknown field `extra`");
}

#[test]
fn syntax_and_type_errors_have_lines() {
    expect_error(
        &format!("{MIRROR}latest = \"five\"\n"),
        "mirror[1]",
        Some(4),
        "invalid type",
    );
    expect_error(
        "[defaults]\nconcurrency = -1\n",
        "defaults",
        Some(2),
        "concurrency",
    );
    expect_error("[defaults\n", "mirror.toml", Some(1), "");
    expect_error(
        "[[mirror]]\nsource = \"nginx\"\n",
        "mirror[1]",
        None,
        "missing field `target`",
    );
}

#[test]
fn bad_cron_is_rejected() {
    expect_error(
        &format!("{MIRROR}schedule = \"*/30 * * *\"\n"),
        "mirror[1].schedule",
        Some(4),
        "expected 5 fields",
    );
    expect_error(
        &format!("{MIRROR}schedule = \"0 0 0 * * * 2030\"\n"),
        "mirror[1].schedule",
        Some(4),
        "invalid cron",
    );
    expect_error(
        &format!("{MIRROR}schedule = \"99 * * * *\"\n"),
        "mirror[1].schedule",
        Some(4),
        "invalid cron",
    );
    expect_error(
        "[defaults]\nschedule = \"nope\"\n",
        "defaults.schedule",
        Some(2),
        "invalid cron",
    );
}

#[test]
fn six_field_cron_is_accepted() {
    let (_d, r) = load(&format!("{MIRROR}schedule = \"*/5 * * * * *\"\n"));
    let c = r.unwrap();
    assert_eq!(c.mirrors[0].schedule.pattern(), "*/5 * * * * *");
}

#[test]
fn bad_regex_is_rejected() {
    expect_error(
        &format!("{MIRROR}include = ['^1\\.(']\n"),
        "mirror[1].include",
        Some(4),
        "invalid regular expression",
    );
    expect_error(
        &format!("{MIRROR}exclude = ['[z-a]']\n"),
        "mirror[1].exclude",
        Some(4),
        "invalid regular expression",
    );
}

#[test]
fn bad_semver_and_latest_zero_are_rejected() {
    expect_error(
        &format!("{MIRROR}semver = \">= one\"\n"),
        "mirror[1].semver",
        Some(4),
        "invalid semver requirement",
    );
    expect_error(
        &format!("{MIRROR}latest = 0\n"),
        "mirror[1].latest",
        Some(4),
        "latest = 0",
    );
}

#[test]
fn bad_references_are_rejected() {
    expect_error(
        "[[mirror]]\nsource = \"Docker.io/NGINX\"\ntarget = \"r.io/x\"\n",
        "mirror[1].source",
        Some(2),
        "image reference",
    );
    expect_error(
        "[[mirror]]\nsource = \"nginx\"\ntarget = \"r.io/a//b\"\n",
        "mirror[1].target",
        Some(3),
        "image reference",
    );
    expect_error(
        &format!(
            "[[mirror]]\nsource = \"nginx\"\ntarget = \"r.io/x@sha256:{}\"\n",
            "a".repeat(64)
        ),
        "mirror[1].target",
        Some(3),
        "has a digest",
    );
    expect_error(
        "[[mirror]]\nsource = \"nginx\"\ntarget = \"r.io/x:1\"\n",
        "mirror[1].target",
        Some(3),
        "several tags",
    );
    expect_error(
        "[[mirror]]\nsource = \"nginx:1\"\ntarget = \"r.io/x\"\ntags = [\"2\"]\n",
        "mirror[1].tags",
        Some(2),
        "names a tag",
    );
    expect_error(
        "[[mirror]]\nsource = \"nginx\"\ntarget = \"r.io/x\"\ntags = [\"-bad\"]\n",
        "mirror[1].tags",
        Some(4),
        "not a valid tag",
    );
    expect_error(
        "[[mirror]]\nsource = \"r.io/x:1\"\ntarget = \"r.io/x\"\n",
        "mirror[1].target",
        Some(3),
        "the source itself",
    );
}

#[test]
fn bad_platform_is_rejected() {
    expect_error(
        &format!("{MIRROR}platforms = [\"linux\"]\n"),
        "mirror[1].platforms",
        Some(4),
        "os/arch",
    );
    expect_error(
        "[defaults]\nplatforms = [\"linux/amd64/v1/x\"]\n",
        "defaults.platforms",
        Some(2),
        "os/arch",
    );
}

#[test]
fn bad_timezone_is_rejected() {
    expect_error(
        "[defaults]\ntimezone = \"Mars/Olympus\"\n",
        "defaults.timezone",
        Some(2),
        "unknown time zone",
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let text = format!("{MIRROR}\n{MIRROR}");
    expect_error(
        &text,
        "mirror[2].name",
        Some(5),
        "duplicate mirror name \"mirror/nginx\"",
    );
    let text = "[[mirror]]\nname = \"a\"\nsource = \"nginx:1\"\ntarget = \"r.io/x\"\n\n[[mirror]]\nname = \"a\"\nsource = \"redis:7\"\ntarget = \"r.io/y\"\n";
    expect_error(
        text,
        "mirror[2].name",
        Some(6),
        "duplicate mirror name \"a\"",
    );
}

#[test]
fn zero_concurrency_is_rejected() {
    expect_error(
        "[defaults]\nconcurrency = 0\n",
        "defaults.concurrency",
        Some(2),
        "at least 1",
    );
    expect_error(
        "[defaults]\nblob_concurrency = 0\n",
        "defaults.blob_concurrency",
        Some(2),
        "at least 1",
    );
}

#[test]
fn bad_listen_and_registry_tables_are_rejected() {
    expect_error(
        "[server]\nlisten = \"localhost\"\n",
        "server.listen",
        Some(2),
        "IP:PORT",
    );
    expect_error(
        "[[registry]]\nhost = \"a.io\"\n[[registry]]\nhost = \"a.io\"\n",
        "registry[2].host",
        None,
        "configured twice",
    );
    expect_error(
        "[[registry]]\nhost = \"a.io\"\npassword = \"p\"\npassword_env = \"X\"\n",
        "registry[1]",
        None,
        "only one of password",
    );
}

#[test]
fn secrets_never_reach_debug_output() {
    let (_d, r) =
        load("[[registry]]\nhost = \"a.io\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n");
    let c = r.unwrap();
    assert!(!format!("{c:?}").contains("hunter2-secret"));
}

#[test]
fn selections() {
    let digest = format!("sha256:{}", "b".repeat(64));
    let (_d, r) = load(&format!(
        "[[mirror]]\nsource = \"ghcr.io/o/app@{digest}\"\ntarget = \"r.io/app:pinned\"\nplatforms = [\"linux/amd64\"]\n\n\
         [[mirror]]\nsource = \"ghcr.io/o/app\"\ntarget = \"r.io/all\"\n\n\
         [[mirror]]\nsource = \"ghcr.io/o/app\"\ntarget = \"r.io/some\"\ntags = [\"a\", \"b\", \"a\"]\nforce = false\n"
    ));
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    let pinned = &c.mirrors[0];
    assert!(matches!(&pinned.selection, Selection::Digest(d) if d.to_string() == digest));
    let Selection::Digest(d) = &pinned.selection else {
        unreachable!()
    };
    let (s, t) = pinned.pair_for_digest(d, None).unwrap();
    assert_eq!(s.to_string(), format!("ghcr.io/o/app@{digest}"));
    assert_eq!(t.to_string(), "r.io/app:pinned");
    assert_eq!(pinned.name, "app:pinned");
    assert!(matches!(c.mirrors[1].selection, Selection::All));
    assert!(matches!(&c.mirrors[2].selection, Selection::Tags(t) if t == &["a", "b"]));
    assert!(!c.mirrors[2].force);

    // A digest-pinned source with platforms and no target tag cannot be found again.
    expect_error(
        &format!(
            "[[mirror]]\nsource = \"ghcr.io/o/app@{digest}\"\ntarget = \"r.io/app\"\nplatforms = [\"linux/amd64\"]\n"
        ),
        "mirror[1].target",
        Some(3),
        "give the target a tag",
    );
}
