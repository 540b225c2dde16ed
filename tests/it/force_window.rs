//! `force = false` and a tag created at the target during a run: a run
//! asks the target tag once (the compare step) and the copy that follows
//! reuses that answer, so a tag another writer creates after the compare
//! found it absent is overwritten by the copy. The documented limit
//! (docs/config.md, `force`); the distribution API has no conditional
//! manifest PUT that would close it (OCI distribution spec, "Pushing
//! Manifests"). The other writer is stood in for by a proxy that answers
//! the compare's HEAD 404 while the tag exists: a real registry cannot be
//! made to create the tag at exactly that moment.

use crate::common;

use common::{Fault, FaultPlan, Format, ImageSet, RegistryOptions, TestProxy, TestRegistry, push};

use crate::state_store::{config, sync};

async fn digest_at(dst: &TestRegistry) -> Option<String> {
    crate::policy::digest_at(dst, "mirror/app", "v1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_force_a_tag_created_after_the_compare_is_overwritten() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ours = ImageSet::image("force-window-source", "linux/amd64", Format::Oci);
    let theirs = ImageSet::image("force-window-other", "linux/amd64", Format::Oci);
    push(&src, "team/app", "v1", ours.clone()).await.unwrap();
    push(&dst, "mirror/app", "v1", theirs.clone())
        .await
        .unwrap();
    let dp = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\ntags = [\"v1\"]\n\
             force = false\nreferrers = false\n",
            src.host(),
            dp.host()
        ),
    );
    // The compare sees the other writer's tag: a conflict, left alone.
    let (_, report, stderr) = sync(&path, None).await;
    assert_eq!(
        report["images"][0]["result"], "conflict",
        "{report:#}\n{stderr}"
    );
    assert_eq!(digest_at(&dst).await.as_deref(), Some(theirs.digest()));

    // The compare finds the tag absent (created just after it, as far as the
    // run can tell): the copy reuses that answer and writes over it.
    dp.set_plan(FaultPlan::none().nth(
        "HEAD",
        "/v2/mirror/app/manifests/v1$",
        1,
        Fault::Status(404),
    ));
    let (_, report, stderr) = sync(&path, None).await;
    assert_eq!(dp.injected().len(), 1, "{:?}", dp.requests());
    assert_eq!(
        report["images"][0]["result"], "copied",
        "{report:#}\n{stderr}"
    );
    assert_eq!(digest_at(&dst).await.as_deref(), Some(ours.digest()));
}
