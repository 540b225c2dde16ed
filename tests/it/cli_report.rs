//! The JSON report of `import`, `index create` and `sync` (docs/report.md):
//! every command's output, on success, dry run and failure, validates
//! against docs/report.schema.json, and the document names every field and
//! word the schema allows.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{Format, ImageSet, RegistryOptions, Run, TestRegistry, push, regmirror_isolated};
use serde_json::Value;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn doc_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.md")).unwrap()
}

/// Where `v` breaks docs/report.schema.json (empty: it is a valid report).
pub(crate) fn schema_errors(v: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema()).expect("the schema compiles");
    validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Parse stdout as one JSON document and validate it against the schema.
fn validated(what: &str, run: &Run) -> Value {
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}):\n{}\nstderr: {}",
            run.stdout, run.stderr
        )
    });
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{v:#}");
    assert_eq!(
        v["exit_code"].as_i64(),
        Some(i64::from(run.code)),
        "{what}: exit_code is the process's"
    );
    v
}

/// Every property name and enum word in the schema.
fn schema_names(v: &Value, names: &mut BTreeSet<String>, words: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                names.extend(props.keys().cloned());
            }
            if let Some(Value::Array(e)) = map.get("enum") {
                words.extend(e.iter().filter_map(|w| w.as_str().map(str::to_string)));
            }
            for child in map.values() {
                schema_names(child, names, words);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| schema_names(c, names, words)),
        _ => {}
    }
}

#[test]
fn the_document_describes_every_field_and_word_of_the_schema() {
    let (mut names, mut words) = (BTreeSet::new(), BTreeSet::new());
    schema_names(&schema(), &mut names, &mut words);
    assert!(names.len() > 30, "{names:?}");
    let doc = doc_text();
    for n in names.iter().chain(&words) {
        assert!(
            doc.contains(&format!("`{n}`")),
            "docs/report.md does not document `{n}`"
        );
    }
    assert_eq!(schema()["properties"]["schema_version"]["const"], 1);
    assert!(doc.contains("**Schema version: 1.**"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_the_documented_report() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("report", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    for p in ["linux/amd64", "linux/arm64"] {
        let img = set.image_for(p).unwrap().clone();
        let tag = format!("v1-{}", p.replace('/', "-"));
        push(&src, "team/single", &tag, common::Node::Image(img))
            .await
            .unwrap();
    }
    let (s, d) = (src.host(), dst.host());
    let image = format!("{s}/team/app:v1");

    // import: dry run, copy, up to date, conflict, failure, invalid argument.
    let run = regmirror_isolated(
        &["import", "--dry-run", "--output", "json", &image, &d],
        &[],
    )
    .await;
    let v = validated("import --dry-run", &run);
    assert_eq!(
        (v["dry_run"].as_bool(), v["images"][0]["result"].as_str()),
        (Some(true), Some("would-copy"))
    );
    let run = regmirror_isolated(&["import", "--output", "json", &image, &d], &[]).await;
    let v = validated("import", &run);
    assert_eq!(v["images"][0]["result"], "copied");
    assert_eq!(
        v["totals"]["blobs_copied"].as_u64().unwrap() as usize,
        set.blobs().len()
    );
    assert!(v["duration_seconds"].as_f64().unwrap() > 0.0);
    let run = regmirror_isolated(&["import", "--output", "json", &image, &d], &[]).await;
    assert_eq!(
        validated("import again", &run)["images"][0]["result"],
        "up-to-date"
    );
    let run = regmirror_isolated(
        &[
            "import",
            "--output",
            "json",
            &format!("{s}/team/single:v1-linux-amd64"),
            &format!("{d}/team/app:v1"),
        ],
        &[],
    )
    .await;
    assert_eq!(validated("import conflict", &run)["result"], "conflict");
    let run = regmirror_isolated(
        &[
            "import",
            "--output",
            "json",
            &format!("{s}/team/none:v1"),
            &d,
        ],
        &[],
    )
    .await;
    let v = validated("import failure", &run);
    assert_eq!(run.code, 1);
    assert_eq!(v["result"], "failed");
    assert!(v["error"].as_str().unwrap().contains("team/none:v1"), "{v}");
    assert_eq!(v["images"][0]["result"], "failed");
    let run = regmirror_isolated(
        &[
            "import",
            "--output",
            "json",
            "--platform",
            "nope",
            &image,
            &d,
        ],
        &[],
    )
    .await;
    let v = validated("import invalid", &run);
    assert_eq!((run.code, v["result"].as_str()), (2, Some("invalid")));

    // index create: dry run, push, failure.
    let index_args = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "index".into(),
            "create".into(),
            "--output".into(),
            "json".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a.push(format!("{d}/team/multi:1"));
        a.push(format!("{s}/team/single:v1-linux-amd64"));
        a.push(format!("{s}/team/single:v1-linux-arm64"));
        a
    };
    let a = index_args(&["--dry-run"]);
    let run = regmirror_isolated(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
    let v = validated("index create --dry-run", &run);
    assert_eq!(v["images"][0]["result"], "would-copy");
    assert_eq!(v["index"]["entries"].as_array().unwrap().len(), 2);
    assert!(
        !common::Pusher::for_registry(&dst)
            .manifest_exists("team/multi", "1")
            .await
            .unwrap(),
        "a dry run pushed the index"
    );
    let a = index_args(&[]);
    let run = regmirror_isolated(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
    let v = validated("index create", &run);
    assert_eq!(v["images"][0]["result"], "copied");
    assert_eq!(v["images"][0]["target_digest"], v["index"]["digest"]);
    assert!(
        v["totals"]["manifests_pushed"].as_u64().unwrap() >= 3,
        "{v}"
    );
    // The text form ends with the same summary.
    let a = index_args(&[]);
    let a: Vec<&str> = a
        .iter()
        .map(String::as_str)
        .filter(|x| *x != "json" && *x != "--output")
        .collect();
    let run = regmirror_isolated(&a, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run
        .stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_default();
    assert!(
        summary.contains("1 up to date")
            && summary.contains("manifests:")
            && summary.contains("blobs:"),
        "{}",
        run.stdout
    );
    let run = regmirror_isolated(
        &[
            "index",
            "create",
            "--output",
            "json",
            &format!("{d}/team/multi:2"),
            &format!("{s}/team/single:absent"),
        ],
        &[],
    )
    .await;
    let v = validated("index create failure", &run);
    assert_eq!((run.code, v["result"].as_str()), (1, Some("failed")));

    // sync: dry run, a partial run with a failed listing and a failed image.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nname = \"ok\"\nsource = \"{s}/team/app\"\ntarget = \"{d}/sync/app\"\n\n\
             [[mirror]]\nname = \"missing-tag\"\nsource = \"{s}/team/app:nope\"\ntarget = \"{d}/sync/app2\"\n\n\
             [[mirror]]\nname = \"unlisted\"\nsource = \"{s}/team/absent\"\ntarget = \"{d}/sync/absent\"\nlatest = 1\n"
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = regmirror_isolated(
        &["sync", "--config", cfg, "--dry-run", "--output", "json"],
        &[],
    )
    .await;
    let v = validated("sync --dry-run", &run);
    assert_eq!(v["totals"]["would_copy"], 1, "{v}");
    let run = regmirror_isolated(&["sync", "--config", cfg, "--output", "json"], &[]).await;
    let v = validated("sync", &run);
    assert_eq!((run.code, v["result"].as_str()), (3, Some("partial")));
    assert_eq!(v["totals"]["copied"], 1, "{v}");
    assert_eq!(
        v["totals"]["failed"], 2,
        "a failed image and a failed listing: {v}"
    );
    let unlisted = v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "unlisted")
        .unwrap();
    assert_eq!(unlisted["errors"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["mirror"].is_string()),
        "{v}"
    );
    let run = regmirror_isolated(
        &[
            "sync", "--config", cfg, "--output", "json", "--mirror", "ok",
        ],
        &[],
    )
    .await;
    let v = validated("sync again", &run);
    assert_eq!(
        v["images"][0]["result"], "up-to-date",
        "the same word as import: {v}"
    );
}
