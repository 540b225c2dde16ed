//! `regmirror sync SOURCE TARGET` flags through the binary, against real
//! docker-registry instances: `REGMIRROR_CONFIG` is only a default that
//! mirrors given on the command line override (clap says where the config
//! path came from, so other flags around them do not change the answer),
//! while an explicit `--config`/`-c` with them stays a usage error; and
//! `--convert-schema1` converts a Docker schema 1 source as the
//! `convert_schema1` key and `import --convert-schema1` do.

use crate::common;
use crate::schema1::schema1_image;
use crate::sync_run::ConfigFile;

use common::{
    Format, ImageSet, Node, Pusher, RegistryOptions, TestRegistry, push, regmirror_isolated,
};

async fn exists(reg: &TestRegistry, repo: &str, tag: &str) -> bool {
    Pusher::for_registry(reg)
        .manifest_exists(repo, tag)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_mirrors_win_over_regmirror_config_but_not_over_a_config_flag() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = Node::Image(ImageSet::image("pause", "linux/amd64", Format::Oci));
    push(&src, "k8s/pause", "3.9", image).await.unwrap();
    let file = ConfigFile::new();
    let cfg = file.write(&format!(
        "[[mirror]]\nsource = \"{}/k8s/pause:3.9\"\ntarget = \"{}/from-config/pause\"\n",
        src.host(),
        dst.host()
    ));
    let cfg = cfg.to_str().unwrap();
    let env = [("REGMIRROR_CONFIG", cfg)];
    let source = format!("{}/k8s/pause:3.9", src.host());

    // Other flags beside the mirror, before or after it, short or long.
    for (n, extra) in [
        vec!["--concurrency", "2"],
        vec!["--concurrency=2", "--output", "json"],
        vec!["--progress", "none", "--dry-run"],
    ]
    .into_iter()
    .enumerate()
    {
        let target = format!("{}/cli{n}/pause", dst.host());
        let mut args = vec!["sync"];
        args.extend(extra.iter().copied());
        args.extend([source.as_str(), target.as_str()]);
        let run = regmirror_isolated(&args, &env).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        let dry = extra.contains(&"--dry-run");
        assert_eq!(
            exists(&dst, &format!("cli{n}/pause"), "3.9").await,
            !dry,
            "{args:?}: the command-line mirror ran (a dry run copies nothing)"
        );
    }
    assert!(
        !exists(&dst, "from-config/pause", "3.9").await,
        "the config of REGMIRROR_CONFIG did not run"
    );

    // A config flag, in each spelling, with mirrors on the command line is a
    // usage error, whether or not the variable is set too.
    let target = format!("{}/flag/pause", dst.host());
    let spelled = [vec!["--config", cfg], vec!["-c", cfg]];
    let joined = [format!("--config={cfg}"), format!("-c{cfg}")];
    let mut spellings: Vec<Vec<&str>> = spelled.to_vec();
    spellings.extend(joined.iter().map(|a| vec![a.as_str()]));
    for flag in &spellings {
        for envs in [&env[..], &[]] {
            let mut args = vec!["sync", "--concurrency", "2"];
            args.extend(flag.iter().copied());
            args.extend([source.as_str(), target.as_str()]);
            let run = regmirror_isolated(&args, envs).await;
            assert_eq!(run.code, 2, "{args:?} {envs:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("not both"),
                "{args:?} {envs:?}: {}",
                run.stderr
            );
        }
    }
    assert!(!exists(&dst, "flag/pause", "3.9").await);
    assert!(!exists(&dst, "from-config/pause", "3.9").await);
}

/// `sync --output json ARGS...`: exit code, report, stderr.
async fn sync_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["sync", "--output", "json"];
    all.extend_from_slice(args);
    let run = regmirror_isolated(&all, &[]).await;
    let report = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{all:?}: stdout is not JSON ({e}): {}", run.stdout));
    (run.code, report, run.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_convert_schema1_converts_a_command_line_mirror_as_import_does() {
    let src = TestRegistry::start(RegistryOptions::anonymous().with_schema1()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let pushed = schema1_image::push_schema1(&src, "team/old", "v1").await;
    let source = format!("{}/team/old", src.host());

    // Without the flag the tag is reported unsupported and nothing is written.
    let kept = format!("{}/m/kept", dst.host());
    let (code, report, stderr) = sync_json(&[&source, &kept]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["totals"]["unsupported"], 1, "{report:#}");
    assert!(!exists(&dst, "m/kept", "v1").await);

    // With it, the tag is converted, then up to date on the next run.
    let target = format!("{}/m/old", dst.host());
    let (code, report, stderr) = sync_json(&["--convert-schema1", &source, &target]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let image = &report["images"][0];
    assert_eq!(image["result"], "copied", "{report:#}");
    assert_eq!(
        image["converted_from"],
        pushed.digest.as_str(),
        "{report:#}"
    );
    let converted = image["target_digest"].as_str().unwrap().to_string();
    assert_ne!(converted, pushed.digest);
    let (code, report, stderr) = sync_json(&["--convert-schema1", &source, &target]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["images"][0]["result"], "up-to-date", "{report:#}");

    // The same bytes as `import --convert-schema1` writes.
    let imported = format!("{}/m/imported:v1", dst.host());
    let run = regmirror_isolated(
        &[
            "import",
            "--convert-schema1",
            "--output",
            "json",
            &format!("{source}:v1"),
            &imported,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        doc["images"][0]["target_digest"],
        converted.as_str(),
        "{doc:#}"
    );

    // With a config file the flag is refused, naming the key to set.
    let file = ConfigFile::new();
    let cfg = file.write(&format!(
        "[[mirror]]\nsource = \"{source}\"\ntarget = \"{target}\"\n"
    ));
    let cfg = cfg.to_str().unwrap();
    let run = regmirror_isolated(&["sync", "--convert-schema1", "--config", cfg], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--convert-schema1"), "{}", run.stderr);
    assert!(run.stderr.contains("[[mirror]]"), "{}", run.stderr);
}
