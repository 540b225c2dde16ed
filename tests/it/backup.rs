//! `backup = "{tag}-prev{n}"` with `backup_keep` against distribution 2.8:
//! each time a moving tag is about to point at a new digest, the digest it
//! held gets the newest backup tag (older backups shift up, the oldest
//! falls off); manifests only, no blob; a no-op run writes nothing; source
//! tags that look like backups are not mirrored over them; prune never
//! deletes them. Digests are read back with skopeo.

use crate::common;
use crate::sync_run;

use common::{
    FaultPlan, Format, ImageSet, Node, RegistryOptions, TestProxy, TestRegistry, skopeo_raw_digest,
};
use sync_run::{ConfigFile, push_tags, sync_json, tags};

fn index(seed: &str) -> Node {
    ImageSet::multi_arch(seed, &["linux/amd64", "linux/arm64"], false, Format::Oci).into()
}

async fn digest_of(reg: &TestRegistry, reference: &str) -> String {
    skopeo_raw_digest(reg, reference)
        .await
        .unwrap_or_else(|e| panic!("{reference}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_rotate_as_the_tag_moves_and_cost_one_put_each() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
         backup = \"{{tag}}-prev{{n}}\"\nbackup_keep = 2\nprune = \"not-in-source\"\n",
        src.host(),
        proxy.host()
    ));
    let versions: Vec<Node> = ["a", "b", "c", "d"]
        .iter()
        .map(|v| index(&format!("backup/{v}")))
        .collect();

    // First copy: nothing to back up.
    push_tags(&src, "team/app", &["latest"], &versions[0]).await;
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert!(run["images"][0]["backup_tag"].is_null(), "{run:#}");
    assert_eq!(tags(&dst, "mirror/app").await, ["latest"]);

    // Each move backs the old digest up as prev1 and shifts prev1 to prev2.
    for step in 1..4 {
        push_tags(&src, "team/app", &["latest"], &versions[step]).await;
        proxy.reset();
        let (code, run, stderr) = sync_json(&path, &[]).await;
        assert_eq!(code, 0, "step {step}: {run:#}\n{stderr}");
        assert_eq!(run["images"][0]["result"], "copied");
        assert_eq!(run["images"][0]["backup_tag"], "latest-prev1", "{run:#}");
        assert_eq!(run["totals"]["backups"], 1);
        assert_eq!(
            digest_of(&dst, "mirror/app:latest").await,
            versions[step].digest()
        );
        assert_eq!(
            digest_of(&dst, "mirror/app:latest-prev1").await,
            versions[step - 1].digest(),
            "step {step}"
        );
        if step >= 2 {
            assert_eq!(
                digest_of(&dst, "mirror/app:latest-prev2").await,
                versions[step - 2].digest(),
                "step {step}"
            );
        }
        // Backups are manifest PUTs only: prev1 always, prev2 once it
        // exists to shift; no blob is uploaded for them (the new index's
        // blobs are the copy's own).
        let backup_puts = proxy.count_matching("PUT", "/manifests/latest-prev[12]$");
        assert_eq!(backup_puts, if step == 1 { 1 } else { 2 }, "step {step}");
        // Prune (on for this mirror) never deletes a backup tag.
        assert!(
            run["mirrors"][0]["prune"]["pruned"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{run:#}"
        );
    }
    // backup_keep = 2: a third backup never appears; the oldest fell off.
    assert_eq!(
        tags(&dst, "mirror/app").await,
        ["latest", "latest-prev1", "latest-prev2"]
    );

    // A no-op run backs nothing up and writes nothing.
    proxy.reset();
    let (code, run, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 0);
    assert_eq!(run["totals"]["up_to_date"], 1);
    assert_eq!(run["totals"]["backups"], 0);
    assert_eq!(proxy.count("PUT", "/"), 0);

    // A source tag named like a backup is not mirrored over the backup.
    push_tags(&src, "team/app", &["latest-prev1"], &versions[0]).await;
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["totals"]["images"], 1, "{run:#}");
    assert_eq!(
        digest_of(&dst, "mirror/app:latest-prev1").await,
        versions[2].digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backup_without_force_and_none_in_a_dry_run() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (old, new) = (index("nobackup/old"), index("nobackup/new"));
    push_tags(&dst, "mirror/app", &["1.0"], &old).await;
    push_tags(&src, "team/app", &["1.0"], &new).await;
    let config = ConfigFile::new();
    let mirror = |force: bool| {
        format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
             backup = \"{{tag}}-prev\"\nforce = {force}\n",
            src.host(),
            dst.host()
        )
    };

    // force = false: the tag is not moved, so nothing is backed up.
    let path = config.write(&mirror(false));
    let (code, run, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 1, "a conflict fails the sync: {run:#}");
    assert_eq!(run["images"][0]["result"], "conflict");
    assert!(run["images"][0]["backup_tag"].is_null());
    assert_eq!(tags(&dst, "mirror/app").await, ["1.0"]);

    // A dry run writes no backup either.
    let path = config.write(&mirror(true));
    let (code, run, _) = sync_json(&path, &["--dry-run"]).await;
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["totals"]["would_copy"], 1);
    assert_eq!(tags(&dst, "mirror/app").await, ["1.0"]);

    // The real run backs up first, then moves the tag.
    let (code, run, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["images"][0]["backup_tag"], "1.0-prev");
    assert_eq!(digest_of(&dst, "mirror/app:1.0-prev").await, old.digest());
    assert_eq!(digest_of(&dst, "mirror/app:1.0").await, new.digest());
}

/// A backup tag pushed by hand (its digest is not one the source serves)
/// is never overwritten: the backup is skipped with a warning and the copy
/// goes on; backups regmirror wrote itself rotate as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_tag_regmirror_did_not_write_is_never_overwritten() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (a, b, c) = (index("foreign/a"), index("foreign/b"), index("foreign/c"));
    let human = index("foreign/by-hand");
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
         backup = \"{{tag}}-prev\"\nforce = true\n",
        src.host(),
        dst.host()
    ));
    push_tags(&src, "team/app", &["1.0"], &a).await;
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    push_tags(&dst, "mirror/app", &["1.0-prev"], &human).await;

    push_tags(&src, "team/app", &["1.0"], &b).await;
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["images"][0]["result"], "copied", "{run:#}");
    assert!(run["images"][0]["backup_tag"].is_null(), "{run:#}");
    assert!(stderr.contains("backup skipped"), "{stderr}");
    assert!(stderr.contains("1.0-prev"), "{stderr}");
    assert_eq!(digest_of(&dst, "mirror/app:1.0-prev").await, human.digest());
    assert_eq!(digest_of(&dst, "mirror/app:1.0").await, b.digest());

    // With a backup regmirror could have written (a digest the source
    // serves), backups resume and rotate.
    push_tags(&dst, "mirror/app", &["1.0-prev"], &a).await;
    push_tags(&src, "team/app", &["1.0"], &c).await;
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["images"][0]["backup_tag"], "1.0-prev", "{run:#}");
    assert_eq!(digest_of(&dst, "mirror/app:1.0-prev").await, b.digest());
}
