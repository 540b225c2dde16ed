//! `regmirror verify`: audit mirrored images where they were written (one
//! image against its source, a target alone, or a config's mirrors),
//! report each image's verdict and findings, and with `--heal` copy back
//! what is missing.

use std::path::PathBuf;
use std::time::Instant;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use regmirror::copy::audit::{
    AuditError, AuditOptions, Checked, FindingKind, ImageAudit, PolicyStatus, audit_image, heal,
};
use regmirror::copy::target::resolve_target;
use regmirror::copy::{Copier, CopyOptions, ReferrerOptions};
use regmirror::registry::{Client, Digest, Reference};
use regmirror::sync::Mirror;
use regmirror::sync::run::{SyncOptions, Syncer};
use regmirror::sync::state::StateStore;

use super::report::Output;
use super::verify_report::{
    Detail, Entry, HealEntry, Totals, entry_of, policy_of, print_text, verdict_word, write_report,
};
use super::{Exit, UsageError};

/// Long help of `regmirror verify`.
pub const LONG_ABOUT: &str = "Audit a mirror where it was written: the target tag holds the \
source's digest, every child manifest and blob is present with the size its manifest lists \
(HEAD), and every referrer the source lists (signatures, SBOMs, attestations, cosign tags, also \
of each platform manifest) is present. With --deep every blob is read again and hashed. Each \
image gets a verdict, complete or incomplete, with its findings: tag_moved, missing_manifest, \
missing_blob, blob_size, blob_digest, missing_referrer. With a signature policy (a mirror's \
`policy`, or --verify-key/--policy on the one-image form, as for `import --verify`) the \
signatures at the target are judged too: an image whose policy is rejected is incomplete.

Forms: `verify SOURCE TARGET` (one image; TARGET as in `import`), `verify TARGET` (the target \
alone: its own graph and the referrers it lists), `verify --config FILE [--mirror NAME]` (the \
images the config's mirrors select now, with the same tag filters as `sync`). Images are written \
[REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST].

The source is asked by HEAD and by its tag and referrer listings, never by a manifest GET of the \
image (registries such as Docker Hub count those); only the target's manifests are read. With \
--no-source, or with --config when the source cannot be reached, each tag is compared with \
the digest regmirror last mirrored there, as the run-state store recorded it (`unknown` when \
it has no record).

--heal copies what is missing from the source (blobs, child manifests, referrers, then the image \
again with its tag last), deletes a damaged blob at the target and copies it again, verifies \
again and reports what was repaired. Exit 0 when every image \
is complete (after healing), 1 when damage was found or a check failed, 2 on bad usage.";

/// Examples of `regmirror verify`.
pub const EXAMPLES: &str = "\
Examples:
  regmirror verify docker.io/library/nginx:1.27 registry.example.com/mirror/nginx:1.27
  regmirror verify --deep registry.example.com/mirror/nginx:1.27
  regmirror verify --config mirror.toml --mirror nginx --heal --output json";

/// Arguments of `regmirror verify`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("config", |a| a.help(
    "Config file: its [[registry]] tables apply; without IMAGE arguments its mirrors are \
     verified")))]
pub struct Args {
    /// SOURCE TARGET (the target compared with its source), or TARGET alone.
    #[arg(value_name = "IMAGE", num_args = 0..=2)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    /// With --config and no IMAGE: verify only this mirror (repeatable).
    #[arg(long, value_name = "NAME")]
    pub mirror: Vec<String>,
    /// Read every blob again and check that its bytes hash to its digest.
    #[arg(long)]
    pub deep: bool,
    /// Copy what is missing from the source, then verify again (needs a source).
    #[arg(long, conflicts_with = "no_source")]
    pub heal: bool,
    /// Do not ask the source: compare each tag with the digest regmirror last mirrored
    /// there (the run-state store's record; `unknown` without one).
    #[arg(long)]
    pub no_source: bool,
    /// One-image form: a trusted public key, a PEM file such as cosign.pub (ECDSA P-256, RSA
    /// or Ed25519); repeatable. The signatures at the target must satisfy it.
    #[arg(long, visible_alias = "key", value_name = "FILE")]
    pub verify_key: Vec<PathBuf>,
    /// With --verify-key: `any` (one of the keys must have signed) or `all` (each must have).
    #[arg(
        long,
        visible_alias = "require",
        value_name = "any|all",
        default_value = "any",
        requires = "verify_key"
    )]
    pub verify_require: String,
    /// One-image form: a policy file, TOML with a mirror's policy keys at the top level
    /// (require, keys; key files relative to the policy file).
    #[arg(long, value_name = "FILE", conflicts_with = "verify_key")]
    pub policy: Option<PathBuf>,
    /// Leave referrers (signatures, SBOMs, attestations) and cosign tags out of the audit.
    #[arg(long)]
    pub no_referrers: bool,
    /// Result format on stdout (json: the document of docs/verify.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Also write the JSON document to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub state: super::state_args::StateArgs,
}

/// One image to audit.
struct Job {
    mirror: Option<String>,
    source: Option<Reference>,
    target: Reference,
    copy: CopyOptions,
    audit: AuditOptions,
    /// The target digest regmirror last mirrored there (the run-state store's record).
    recorded: Option<Digest>,
    /// Compare with `recorded` without asking the source.
    no_source: bool,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let result = execute(&args).await;
    if let Some(path) = &args.report {
        write_report(path, started, &result)?;
    }
    super::oneshot::finish("verify", args.output, started, result, print_text)
}

async fn execute(args: &Args) -> anyhow::Result<(Exit, Detail)> {
    let (client, jobs, errors) = jobs(args).await?;
    let copier = Copier::new(client.clone());
    let heal_them = args.heal;
    let entries: Vec<Entry> = futures_util::stream::iter(jobs)
        .map(|job| {
            let (client, copier) = (&client, &copier);
            async move { audit_job(client, copier, job, heal_them).await }
        })
        .buffered(4)
        .collect()
        .await;
    let mut totals = Totals {
        images: entries.len(),
        ..Totals::default()
    };
    for e in &entries {
        match e.verdict {
            "complete" => totals.complete += 1,
            "incomplete" => totals.incomplete += 1,
            _ => totals.errors += 1,
        }
        totals.findings += e.findings.len();
        totals.policy_rejected += usize::from(e.policy == "rejected");
        totals.repaired += e.heal.as_ref().map_or(0, |h| h.repaired.len());
    }
    let exit = if totals.complete == totals.images && errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    };
    Ok((
        exit,
        Detail {
            totals,
            images: entries,
            errors,
        },
    ))
}

/// The client and the images the arguments name; usage errors exit 2.
async fn jobs(args: &Args) -> anyhow::Result<(Client, Vec<Job>, Vec<String>)> {
    let audit = AuditOptions {
        deep: args.deep,
        referrers: if args.no_referrers {
            ReferrerOptions::default()
        } else {
            ReferrerOptions::all()
        },
        ..AuditOptions::default()
    };
    if args.images.is_empty() {
        if args.policy.is_some() || !args.verify_key.is_empty() {
            return Err(UsageError(
                "--verify-key and --policy apply to the one-image form; with --config each \
                 mirror's own `policy` is judged at its target"
                    .to_string(),
            )
            .into());
        }
        return mirror_jobs(args, audit).await;
    }
    if !args.mirror.is_empty() {
        return Err(UsageError(
            "--mirror selects mirrors of --config; it cannot be given with IMAGE arguments"
                .to_string(),
        )
        .into());
    }
    let options = args.registry.client_options()?;
    let (source, target) = match args.images.as_slice() {
        [target] => (None, super::parse_image("target", target)?.or_latest()),
        [source, target] => {
            let source = super::parse_image("source", source)?.or_latest();
            let target = resolve_target(&source, target).map_err(|e| UsageError(e.to_string()))?;
            (Some(source), target)
        }
        _ => {
            return Err(UsageError(format!(
                "verify takes SOURCE TARGET or TARGET, not {} images",
                args.images.len()
            ))
            .into());
        }
    };
    if args.heal && source.is_none() {
        return Err(UsageError(format!(
            "--heal copies from a source: give it, `regmirror verify --heal SOURCE {target}`"
        ))
        .into());
    }
    let hosts: Vec<&str> = source
        .iter()
        .chain(std::iter::once(&target))
        .filter_map(Reference::registry_host)
        .collect();
    super::check_credentials(&options, &hosts)?;
    let copy = CopyOptions {
        referrers: audit.referrers.clone(),
        ..CopyOptions::default()
    };
    let policy = super::import::policy_of(
        args.policy.as_deref(),
        &args.verify_key,
        &args.verify_require,
    )?;
    let job = Job {
        mirror: None,
        source,
        target,
        copy,
        audit: AuditOptions { policy, ..audit },
        recorded: None,
        no_source: args.no_source,
    };
    Ok((Client::new(options)?, vec![job], Vec::new()))
}

/// The images of the config's mirrors (`--mirror`: those named).
async fn mirror_jobs(
    args: &Args,
    audit: AuditOptions,
) -> anyhow::Result<(Client, Vec<Job>, Vec<String>)> {
    let Some(path) = &args.registry.config else {
        return Err(UsageError(
            "regmirror verify needs SOURCE TARGET, TARGET, or --config FILE (see --help)"
                .to_string(),
        )
        .into());
    };
    let config = super::sync::load_config(path)?;
    let mirrors: Vec<Mirror> = super::sync::named_mirrors(&config, path, &args.mirror)?;
    let options = args.registry.client_options_from(Some(&config));
    super::check_credentials(&options, &super::sync::mirror_hosts(&config))?;
    let client = Client::new(options)?;
    let sync_options = SyncOptions {
        record_metrics: false,
        ..SyncOptions::default()
    };
    let syncer = Syncer::new(client.clone(), sync_options, CancellationToken::new());
    let store = args
        .state
        .open_for_config(path, config.state_dir.as_deref());
    let (mut jobs, mut errors) = (Vec::new(), Vec::new());
    for m in &mirrors {
        let (pairs, failed) = syncer.selected_pairs(m).await;
        errors.extend(failed);
        let referrers = if args.no_referrers {
            ReferrerOptions::default()
        } else {
            m.referrers.clone()
        };
        for (source, target) in pairs {
            let recorded = recorded(store.as_deref(), &source, &target);
            jobs.push(Job {
                mirror: Some(m.name.clone()),
                source: Some(source),
                target,
                copy: CopyOptions {
                    platforms: m.platforms.clone(),
                    platforms_optional: m.platforms_optional,
                    referrers: referrers.clone(),
                    ..CopyOptions::default()
                },
                audit: AuditOptions {
                    referrers: referrers.clone(),
                    policy: m.policy.clone(),
                    ..audit.clone()
                },
                recorded,
                no_source: args.no_source,
            });
        }
    }
    Ok((client, jobs, errors))
}

/// The target digest the run-state store recorded for `source` mirrored to
/// `target` (a cache: `None` without a store or a record).
fn recorded(store: Option<&StateStore>, source: &Reference, target: &Reference) -> Option<Digest> {
    let record = store?.tag(&source.to_string(), &target.to_string())?;
    record.target_digest.parse().ok()
}

/// The audit of one image: against its source, else (`--no-source`, or a
/// config's source that cannot be reached) against the digest last
/// mirrored there.
/// With it, what the expected digest is and why the source was not asked.
async fn audit_one(
    client: &Client,
    job: &Job,
) -> (Result<ImageAudit, AuditError>, &'static str, Option<String>) {
    let mut source_error = None;
    if let Some(source) = job.source.as_ref().filter(|_| !job.no_source) {
        match audit_image(client, Some(source), &job.target, None, &job.audit).await {
            // A config's image falls back on the run-state store; the
            // one-image form, which has none, reports the error.
            Err(AuditError::SourceUnreachable(_, e)) if job.mirror.is_some() => {
                tracing::warn!(source = %source, target_ref = %job.target, error = %e, "the source cannot be asked: the target is compared with the digest last mirrored there");
                source_error = Some(format!("{source}: {e}"));
            }
            other => return (other, "source", None),
        }
    }
    let from = match (&job.recorded, &job.source) {
        (Some(_), _) => "last_mirrored",
        (None, Some(_)) => "unknown",
        (None, None) => "none",
    };
    let mut audited =
        audit_image(client, None, &job.target, job.recorded.as_ref(), &job.audit).await;
    if let (Ok(a), Some(_)) = (&mut audited, &job.recorded) {
        for f in a
            .findings
            .iter_mut()
            .filter(|f| f.kind == FindingKind::TagMoved)
        {
            f.detail.push_str(
                " (the digest regmirror last mirrored there, as the run-state store recorded \
                 it): the tag moved at the target since",
            );
        }
    }
    (audited, from, source_error)
}

/// Audit one image, and heal it when asked and needed.
async fn audit_job(client: &Client, copier: &Copier, job: Job, heal_it: bool) -> Entry {
    let (audited, from, source_error) = audit_one(client, &job).await;
    let audit = match audited {
        Ok(a) => a,
        Err(e) => {
            return Entry {
                mirror: job.mirror,
                source: job.source.map(|s| s.to_string()),
                target: job.target.to_string(),
                verdict: "error",
                expected_digest: None,
                expected_from: from,
                source_error,
                target_digest: None,
                findings: Vec::new(),
                checked: Checked::default(),
                policy: PolicyStatus::NotConfigured.label(),
                policy_rejection: None,
                error: Some(format!("verifying {} failed: {e}", job.target)),
                heal: None,
            };
        }
    };
    let mut entry = entry_of(job.mirror.clone(), &audit, from, source_error);
    entry.source = job.source.as_ref().map(ToString::to_string);
    let healable = job.source.as_ref().filter(|_| heal_it && from == "source");
    let Some(source) = healable.filter(|_| !audit.findings.is_empty()) else {
        return entry;
    };
    match heal(copier, source, &job.target, &audit, &job.copy, &job.audit).await {
        Ok(h) => {
            entry.verdict = verdict_word(h.after.verdict);
            entry.target_digest = h.after.target_digest.clone();
            (entry.policy, entry.policy_rejection) = policy_of(&h.after.policy);
            entry.heal = Some(HealEntry {
                repaired: h.repaired,
                unrepaired: h.unrepaired,
            });
        }
        Err(e) => entry.error = Some(format!("healing {} failed: {e}", job.target)),
    }
    entry
}
