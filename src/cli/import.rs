//! `regmirror import SOURCE TARGET`: copy one image, every platform by
//! default, digests preserved.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use regmirror::copy::policy::{Policy, Require, TrustedKey};
use regmirror::copy::target::resolve_target;
use regmirror::copy::{
    BlobAction, BlobOutcome, Copier, CopyOptions, CopyReport, Outcome, Plan, PlanAction, Progress,
    parse_platforms,
};
use regmirror::registry::{Client, Digest};

use super::out::outln;
pub use super::report::Output;
use super::report::{Report, ReportCli};
use super::{Exit, UsageError};

/// Long help of `regmirror import`.
pub const LONG_ABOUT: &str = "Copy one image, every platform by default, digests preserved: \
an index or manifest list is copied with every manifest, blob and attestation it references, \
children first and the tag last, so the target serves byte-identical manifests under the same \
digests. Blobs the target has are skipped, blobs in another repository of the target registry \
are mounted.

SOURCE is [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST] (tag `latest` when neither is given). \
TARGET is a registry alone (the source's repository path and tag are kept), a repository (the \
source's tag is kept) or REPOSITORY:TAG.

Either may be an OCI image layout, oci:DIR[:REF], or a tar of one, oci-archive:FILE[:REF]; REF \
is a tag or NAME:TAG as skopeo writes it. A layout source without REF is its only image; a layout \
target without REF gets the source's tag.";

/// Arguments of `regmirror import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image to copy: [REGISTRY/]REPOSITORY[:TAG][@DIGEST] (tag `latest` when neither is given).
    pub source: String,
    /// Where to copy it: a registry alone (the source's repository path and tag are kept),
    /// a repository (the source's tag is kept) or REPOSITORY:TAG.
    pub target: String,
    /// Platforms to keep, os/arch[/variant], comma-separated or repeated; the index is
    /// rewritten and its digest changes. Default: every platform, digest preserved.
    #[arg(long, value_name = "PLATFORMS")]
    pub platform: Vec<String>,
    /// With --platform: copy the platforms the source has when some requested ones are
    /// missing (they are listed in the report), instead of failing with nothing written.
    #[arg(long, requires = "platform")]
    pub platform_optional: bool,
    /// Convert a Docker schema 1 source to schema 2 (a new digest, reported as
    /// converted_from; a signed manifest's signature is dropped), as skopeo does,
    /// instead of refusing it.
    #[arg(long)]
    pub convert_schema1: bool,
    /// Overwrite a target tag that points at a different digest.
    #[arg(long)]
    pub force: bool,
    /// Print what would be copied, skipped and mounted; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Result format on stdout (json: the report of docs/report.md, also on failure).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub blob_concurrency: u16,
    /// Copy foreign (non-distributable) layers too; by default they are left out
    /// and the target refers to their URLs, as the source does.
    #[arg(long)]
    pub include_foreign_layers: bool,
    #[command(flatten)]
    pub referrers: super::referrer_args::ReferrerArgs,
    /// Check the image's cosign signatures at the source before anything is written, and
    /// refuse it (exit 1, nothing written, the target tag unchanged) unless they satisfy
    /// the policy of --verify-key or --policy.
    #[arg(long)]
    pub verify: bool,
    /// With --verify: a trusted public key, a PEM file such as cosign.pub (ECDSA P-256, RSA
    /// or Ed25519); repeatable.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub verify_key: Vec<std::path::PathBuf>,
    /// With --verify-key: `any` (one of the keys must have signed) or `all` (each must have).
    #[arg(
        long,
        value_name = "any|all",
        default_value = "any",
        requires = "verify_key"
    )]
    pub verify_require: String,
    /// With --verify: a policy file, TOML with a mirror's policy keys at the top level
    /// (require, keys; key files relative to the policy file).
    #[arg(
        long,
        value_name = "FILE",
        requires = "verify",
        conflicts_with = "verify_key"
    )]
    pub policy: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub keyless: Box<KeylessArgs>,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    #[command(flatten)]
    pub state: super::state_args::StateArgs,
}

/// What a run produced: the plan of a dry run, or the copy's report.
enum Done {
    Planned(Box<Plan>, bool),
    /// The copy's report and the digest the tag was to get.
    Copied(Box<CopyReport>, Digest),
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let start = Instant::now();
    let (output, dry_run) = (args.output, args.dry_run);
    let (source, target) = (args.source.clone(), args.target.clone());
    let result = tokio::select! {
        r = execute(args) => r,
        () = super::interrupt() => Err(super::Interrupted(
            "interrupted: the copy stopped; the target tag is written last, so it was either \
             not changed or points at a complete image. Run the command again to finish: what \
             was copied is skipped"
                .into(),
        )
        .into()),
    };
    match result {
        Ok(Done::Planned(plan, force)) => {
            let report = Report::import_plan(&plan, start.elapsed());
            if output == Output::Json {
                report.print(output)?;
            } else {
                print_plan(&plan)?;
            }
            Ok(match plan.action {
                PlanAction::Conflict { .. } if !force => Exit::Conflict,
                _ => Exit::Ok,
            })
        }
        Ok(Done::Copied(r, written)) => {
            let report = Report::import(&r);
            if output == Output::Json {
                report.print(output)?;
            } else {
                print_report(&r)?;
            }
            if let Some(reason) = &r.conflict_reason {
                super::out::warn(&format!(
                    "target {} was left alone: the registry refuses to move the tag ({reason}); \
                     nothing was copied",
                    r.target
                ));
                return Ok(Exit::Conflict);
            }
            if r.referrers.unreadable > 0 {
                super::out::warn(&format!(
                    "{} was written, but {} of the source's fallback indexes could not be \
                     read, so their referrers (signatures, attestations) were not copied",
                    r.target, r.referrers.unreadable
                ));
                return Ok(Exit::Failed);
            }
            Ok(exit_for(
                r.outcome,
                &r.target,
                r.previous_digest.as_ref(),
                &written,
            ))
        }
        Err(e) => {
            if output == Output::Json {
                Report::failed("import", dry_run, Some(source), target, &e, start.elapsed())
                    .print(output)?;
            }
            Err(e)
        }
    }
}

async fn execute(args: Args) -> anyhow::Result<Done> {
    let source = super::parse_image("source", &args.source)?.or_latest();
    if let Some(e) = regmirror::sync::source::port_error(&source) {
        return Err(UsageError(e).into());
    }
    let client_options = args.registry.client_options()?;
    let client = Client::new(client_options.clone()).context("setting up the registry client")?;
    // `oci:DIR` with no REF: the layout's only image, named as in index.json.
    let source = client.resolve_layout_image(&source).await?;
    let target = resolve_target(&source, &args.target).map_err(|e| UsageError(e.to_string()))?;
    if let Some(e) = regmirror::sync::source::port_error(&target) {
        return Err(UsageError(format!("target {:?}: {e}", args.target)).into());
    }
    let platforms = parse_platforms(&args.platform).map_err(|e| UsageError(e.to_string()))?;
    if !platforms.is_empty() && target.tag().is_none() {
        return Err(UsageError(format!(
            "{source} is pinned by digest and --platform produces a new index digest, which \
             would be pushed without a tag: give the target a tag (e.g. {}:pinned)",
            target.repository_only()
        ))
        .into());
    }
    // Found before any registry is contacted: a usage error (exit 2).
    regmirror::copy::refuse_self_copy(&source, &target).map_err(|e| UsageError(e.to_string()))?;
    let options = CopyOptions {
        platforms,
        force: args.force,
        include_foreign_layers: args.include_foreign_layers,
        blob_concurrency: usize::from(args.blob_concurrency),
        referrers: super::referrer_args::options(&args.referrers),
        platforms_optional: args.platform_optional,
        fan_out: None,
        convert_schema1: args.convert_schema1,
        policy: verify_policy(&args)?,
        ..CopyOptions::default()
    };
    let hosts: Vec<&str> = [source.registry_host(), target.registry_host()]
        .into_iter()
        .flatten()
        .collect();
    super::check_credentials(&client_options, &hosts)?;
    // The engine lives as long as this command.
    let mut copier = Copier::with_engine(client.clone(), regmirror::copy::Engine::new());
    // Kept for the whole command: its entries are written when it drops.
    let state = args.state.open_for_import();
    if let Some(s) = &state {
        copier = copier.with_locations(s.clone());
    }
    let terminal =
        args.output == Output::Text && !super::out::json_logs() && std::io::stderr().is_terminal();
    let spinner = terminal.then(|| planning_spinner(&source.to_string(), &target.to_string()));
    if spinner.is_none() {
        tracing::info!(source = %source, target_ref = %target, "planning the copy");
    }
    let plan = copier.plan(&source, &target, &options).await;
    if let Some(s) = &spinner {
        s.finish_and_clear();
    }
    let plan = plan?;
    if args.dry_run {
        return Ok(Done::Planned(Box::new(plan), options.force));
    }
    let bars = terminal.then(|| Arc::new(Bars::new(&plan)));
    let progress: Arc<dyn Progress> = match &bars {
        Some(b) => b.clone(),
        None => Arc::new(LogProgress),
    };
    let report = copier
        .execute_with_progress(&plan, &options, progress)
        .await;
    if let Some(b) = &bars {
        b.bar.finish_and_clear();
    }
    let report = report?;
    // An oci-archive: target is packed now that the image is complete.
    client.finish_layouts().await?;
    // The digest that would have been written: the filtered index's with --platform.
    Ok(Done::Copied(Box::new(report), plan.root.digest.clone()))
}

/// cosign's flags for one keyless signer of `--verify` (boxed: they are
/// rarely given and would make every command's arguments larger).
#[derive(Debug, clap::Args)]
pub struct KeylessArgs {
    /// With --verify: a keyless signer to trust, the certificate's identity (SAN) exactly
    /// (cosign's flag); needs --certificate-oidc-issuer and --trusted-root.
    #[arg(long, value_name = "SAN", requires_all = ["verify", "certificate_oidc_issuer", "trusted_root"], conflicts_with = "policy")]
    pub certificate_identity: Option<String>,
    /// With --verify: a regular expression the whole certificate identity matches.
    #[arg(long, value_name = "REGEX", requires_all = ["verify", "certificate_oidc_issuer", "trusted_root"], conflicts_with_all = ["policy", "certificate_identity"])]
    pub certificate_identity_regexp: Option<String>,
    /// With --certificate-identity(-regexp): the OIDC issuer of the keyless certificate.
    #[arg(long, value_name = "URL", requires = "verify")]
    pub certificate_oidc_issuer: Option<String>,
    /// With --certificate-identity(-regexp): a Sigstore trusted_root.json (Fulcio CAs and
    /// Rekor keys) to check keyless signatures against, offline.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub trusted_root: Option<std::path::PathBuf>,
}

/// The signature policy of `--verify`, when given: `--policy FILE`, else
/// the `--verify-key` files with `--verify-require`.
fn verify_policy(args: &Args) -> Result<Option<Arc<Policy>>, UsageError> {
    if !args.verify {
        return Ok(None);
    }
    let (identities, trusted_root) = regmirror::sync::policy_keys::keyless_flags(
        args.keyless.certificate_oidc_issuer.as_deref(),
        args.keyless.certificate_identity.as_deref(),
        args.keyless.certificate_identity_regexp.as_deref(),
        args.keyless.trusted_root.as_deref(),
    )
    .map_err(UsageError)?;
    if args.policy.is_none() && args.verify_key.is_empty() && identities.is_empty() {
        return Err(UsageError(
            "--verify needs the keys to trust: --verify-key FILE (repeatable), \
             --certificate-identity with --certificate-oidc-issuer and --trusted-root, or \
             --policy FILE"
                .to_string(),
        ));
    }
    let policy = policy_of(
        args.policy.as_deref(),
        &args.verify_key,
        &args.verify_require,
    )?;
    if args.policy.is_some() {
        return Ok(policy);
    }
    let require = match &policy {
        Some(p) => p.require,
        None => parse_require(&args.verify_require)?,
    };
    let keys = policy.map(|p| p.keys.clone()).unwrap_or_default();
    Ok(Some(Arc::new(Policy {
        identities,
        trusted_root,
        ..Policy::with_keys(require, keys)
    })))
}

/// The signature policy of `--policy FILE`, else of the `--verify-key`
/// files (`keys`) with `--verify-require` (`require`); `None` when neither
/// is given. Shared by `import --verify` and `verify`.
pub(super) fn policy_of(
    file: Option<&std::path::Path>,
    keys: &[std::path::PathBuf],
    require: &str,
) -> Result<Option<Arc<Policy>>, UsageError> {
    if let Some(file) = file {
        let p =
            regmirror::sync::policy_keys::load_file(file).map_err(|e| UsageError(e.to_string()))?;
        return Ok(Some(p));
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let require = parse_require(require)?;
    let keys = keys
        .iter()
        .map(|p| TrustedKey::load(p, &p.display().to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(UsageError)?;
    Ok(Some(Arc::new(Policy::with_keys(require, keys))))
}

/// `--verify-require`: `any` or `all`.
fn parse_require(require: &str) -> Result<Require, UsageError> {
    Require::parse(require).ok_or_else(|| {
        UsageError(format!(
            "--verify-require {require:?}: expected `any` or `all`"
        ))
    })
}

/// A spinner shown while the copy is planned (manifest requests, which a
/// `requests_per_second` limit can make slow), so a terminal is never blank.
fn planning_spinner(source: &str, target: &str) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    s.set_message(format!("planning {source} -> {target}: reading manifests"));
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

/// The exit code for an outcome; on a tag conflict, also say why nothing was
/// copied and what to do.
pub fn exit_for(outcome: Outcome, target: &str, current: Option<&Digest>, wanted: &Digest) -> Exit {
    if outcome != Outcome::TagConflict {
        return Exit::Ok;
    }
    let current = current
        .map(ToString::to_string)
        .unwrap_or_else(|| "another digest".to_string());
    super::out::warn(&format!(
        "target {target} already points at {current}, not {wanted}; nothing was copied. \
         Use --force to overwrite the tag."
    ));
    Exit::Conflict
}

fn print_plan(plan: &Plan) -> std::io::Result<()> {
    let s = plan.summary();
    outln!("Plan: {} -> {}", s.source, s.target)?;
    match &plan.action {
        PlanAction::UpToDate => {
            outln!("  up to date: the target already holds {}", s.target_digest)?
        }
        PlanAction::Conflict { current } if !plan.pushes_root => outln!(
            "  conflict: the target holds {current}, not {}; nothing would be copied without --force",
            s.target_digest
        )?,
        PlanAction::Conflict { current } => {
            outln!("  overwrite: the target holds {current} (--force)")?
        }
        PlanAction::Copy => {}
    }
    if let Some(c) = &plan.converted {
        outln!(
            "  converted from Docker schema 1: {} -> {}",
            c.from,
            s.target_digest
        )?;
    } else if plan.digest_changed() {
        outln!(
            "  digest changes: {} -> {} (platforms kept: {}; dropped: {})",
            s.source_digest,
            s.target_digest,
            s.platforms_kept.join(", "),
            if s.platforms_dropped.is_empty() {
                "none".to_string()
            } else {
                s.platforms_dropped.join(", ")
            }
        )?;
    } else {
        outln!("  digest: {}", s.target_digest)?;
    }
    print_notes(&s.target, &s.platforms_missing)?;
    if !plan.pushes_root {
        return Ok(());
    }
    outln!(
        "  manifests: {} to push, {} already present",
        s.manifests_to_push,
        s.manifests_present
    )?;
    outln!(
        "  blobs: {} to copy ({}), {} to mount, {} already present, {} foreign left out",
        s.blobs_to_copy,
        HumanBytes(s.bytes_to_copy),
        s.blobs_to_mount,
        s.blobs_present,
        s.foreign_layers
    )?;
    for b in &plan.blobs {
        let what = match &b.action {
            BlobAction::Copy => "copy   ".to_string(),
            BlobAction::Present => "skip   ".to_string(),
            BlobAction::Foreign => "foreign".to_string(),
            BlobAction::Mount { from } => format!("mount   from {from}:"),
        };
        outln!(
            "    {what} {} {:>10} {}",
            b.digest,
            HumanBytes(b.size).to_string(),
            b.media_type
        )?;
    }
    Ok(())
}

/// What the copy did not do: requested platforms the source lacks
/// (`--platform-optional`), and no tag for a digest-only target.
fn print_notes(target: &str, platforms_missing: &[String]) -> std::io::Result<()> {
    if !platforms_missing.is_empty() {
        outln!(
            "  platforms missing from the source (--platform-optional): {}",
            platforms_missing.join(", ")
        )?;
    }
    if super::report::is_untagged(target) {
        outln!("  {}", super::report::untagged_note(target))?;
    }
    Ok(())
}

/// The digest line of a copy: the digest, or how it changed.
fn print_digest(r: &CopyReport) -> std::io::Result<()> {
    if let Some(from) = &r.converted_from {
        outln!(
            "  converted from Docker schema 1: {from} -> {}",
            r.target_digest
        )
    } else if r.digest_changed() {
        outln!(
            "  digest changed: {} -> {} (platforms kept: {})",
            r.source_digest,
            r.target_digest,
            r.platforms_kept.join(", ")
        )
    } else {
        outln!("  digest: {}", r.target_digest)
    }
}

fn print_report(r: &CopyReport) -> std::io::Result<()> {
    match r.outcome {
        Outcome::UpToDate => outln!("{} is up to date ({})", r.target, r.target_digest)?,
        Outcome::TagConflict => outln!("{} left alone: it holds {}", r.target, r.target_digest)?,
        Outcome::Copied => {
            outln!("Copied {} -> {}", r.source, r.target)?;
            print_digest(r)?;
            if let Some(prev) = &r.previous_digest {
                outln!("  replaced: {prev}")?;
            }

            outln!(
                "  manifests: {} pushed, {} already present",
                r.manifests_copied,
                r.manifests_skipped
            )?;
            outln!(
                "  blobs: {} copied, {} skipped, {} mounted{}",
                r.blobs_copied,
                r.blobs_skipped,
                r.blobs_mounted,
                if r.foreign_layers_skipped > 0 {
                    format!(", {} foreign left out", r.foreign_layers_skipped)
                } else {
                    String::new()
                }
            )?;
            outln!(
                "  transferred: {} in {:.1?}",
                HumanBytes(r.bytes_copied),
                r.duration
            )?;
        }
    }
    if r.outcome != Outcome::TagConflict {
        print_notes(&r.target, &r.platforms_missing)?;
    }
    let c = &r.referrers;
    if c.found + c.filtered + c.cosign_tags_copied + c.left_behind > 0 {
        outln!(
            "  referrers: {} found, {} copied, {} already there, {} filtered out; {} fallback \
             indexes written, {} cosign tags copied",
            c.found,
            c.copied,
            c.skipped,
            c.filtered,
            c.fallback_updates,
            c.cosign_tags_copied
        )?;
    }
    if c.left_behind > 0 {
        outln!(
            "  {} referrers left behind: those of the source index (its signatures) cannot \
             follow a filtered index, which has another digest, and those beyond the referrer \
             limits of one image are not copied (see the warning)",
            c.left_behind
        )?;
    }
    if c.vanished + c.unreadable > 0 {
        outln!(
            "  {} listed referrers no longer at the source (skipped), {} source fallback \
             indexes that could not be read",
            c.vanished,
            c.unreadable
        )?;
    }
    Ok(())
}

/// Progress bar for a terminal: blobs done/total, bytes, rate.
struct Bars {
    bar: ProgressBar,
    total: u64,
    done: AtomicU64,
}

impl Bars {
    fn new(plan: &Plan) -> Bars {
        let moving: Vec<_> = plan
            .blobs
            .iter()
            .filter(|b| matches!(b.action, BlobAction::Copy | BlobAction::Mount { .. }))
            .collect();
        let bytes: u64 = moving.iter().map(|b| b.size).sum();
        let bar = ProgressBar::new(bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(plan.target.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        let total = moving.len() as u64;
        bar.set_message(format!("blobs 0/{total}"));
        Bars {
            bar,
            total,
            done: AtomicU64::new(0),
        }
    }
}

impl Progress for Bars {
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn blob_done(&self, _digest: &Digest, size: u64, outcome: BlobOutcome) {
        match outcome {
            BlobOutcome::Mounted | BlobOutcome::Skipped => self.bar.inc(size),
            BlobOutcome::Copied(_) | BlobOutcome::Foreign => {}
        }
        if matches!(outcome, BlobOutcome::Foreign) {
            return;
        }
        let done = (self.done.fetch_add(1, Ordering::Relaxed) + 1).min(self.total);
        self.bar.set_message(format!("blobs {done}/{}", self.total));
    }
    fn blob_retry(&self, _digest: &Digest, _size: u64, bytes_sent: u64) {
        self.bar
            .set_position(self.bar.position().saturating_sub(bytes_sent));
    }
}

/// Progress as log lines, for non-terminals.
struct LogProgress;

impl Progress for LogProgress {
    fn blob_done(&self, digest: &Digest, size: u64, outcome: BlobOutcome) {
        let result = match outcome {
            BlobOutcome::Copied(_) => "copied",
            BlobOutcome::Skipped => "skipped",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Foreign => "foreign, left out",
        };
        tracing::info!(%digest, size, result, "blob");
    }
}
