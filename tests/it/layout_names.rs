//! Discovery of the repositories of a layout counts the entries it skips:
//! a `ref.name` that names no tag is reported in `invalid_names`, never
//! silently dropped.

use crate::common;
use crate::layout_support;

use layout_support::umoci;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn skipped_layout_names_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci(&["init", "--layout", layout.to_str().unwrap()]).await;
    umoci(&["new", "--image", &format!("{}:v1", layout.display())]).await;
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = index["manifests"][0].clone();
    let names = ["team/app:1.0", "bad+name", "x:", "a:b:c+d", "-nope"];
    for name in names {
        let mut e = entry.clone();
        e["annotations"]["org.opencontainers.image.ref.name"] = name.into();
        index["manifests"].as_array_mut().unwrap().push(e);
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"back\"\nsource = \"oci:{}\"\ntarget = \"127.0.0.1:9/restored\"\n",
            layout.display()
        ),
    )
    .unwrap();
    let run =
        common::regmirror(&["check", "--config", config.to_str().unwrap(), "--discover"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("(4 invalid names skipped)"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}
