//! `platforms_optional`: a listed platform the source lacks does not make
//! the mirrored image look out of date. The second `sync` of an image whose
//! index has no `linux/s390x` is a no-op: the source, behind a counting
//! proxy, sees no manifest GET (the image is not planned again).

use crate::common;
use crate::sync_run;

use common::proxy::{FaultPlan, TestProxy};
use common::{Format, ImageSet, RegistryOptions, TestRegistry, push, regmirror_isolated};
use sync_run::{ConfigFile, tags};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_optional_platform_is_not_planned_again() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "optional",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let proxy = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[[mirror]]\nsource = \"{p}/team/app:v1\"\ntarget = \"{d}/m/app\"\n\
         platforms = [\"linux/amd64\", \"linux/s390x\"]\nplatforms_optional = true\n",
        p = proxy.host(),
        d = dst.host()
    ));
    let args = [
        "sync",
        "--config",
        path.to_str().unwrap(),
        "--output",
        "json",
    ];
    let first = regmirror_isolated(&args, &[]).await;
    assert_eq!(first.code, 0, "first sync failed:\n{}", first.stderr);
    assert_eq!(tags(&dst, "m/app").await, ["v1"]);
    let gets = proxy.count("GET", "/v2/team/app/manifests/");
    assert!(gets > 0, "the first sync read no source manifest");

    proxy.reset();
    let second = regmirror_isolated(&args, &[]).await;
    assert_eq!(second.code, 0, "second sync failed:\n{}", second.stderr);
    let report: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(
        report["images"][0]["result"], "up-to-date",
        "the second sync copied again: {report:#}"
    );
    assert_eq!(
        proxy.count("GET", "/v2/team/app/manifests/"),
        0,
        "the second sync read source manifests (planned the image again): {:?}",
        proxy.requests()
    );
}
