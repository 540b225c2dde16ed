//! Planning: walk the source graph into a deduplicated set of manifests and
//! blobs, and ask the target what it already holds.

use std::collections::{HashMap, HashSet};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::registry::manifest::{Manifest, is_manifest};
use crate::registry::{Descriptor, Digest, Error, Op, RawManifest, Reference};

use super::filter::{
    FilterError, fetch_nested_indexes, filter_index_tree, platform_name, platform_of_config,
    unmatched_specs,
};
use super::{Copier, CopyError, CopyOptions, specs_text};

/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 8;
/// Largest image config read to find a platform.
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;
/// Most root manifests a run keeps for further tags of the same image
/// (see [`Copier::fetch_root`]): past it the memory starts afresh, so a
/// run of many tags holds a bounded share of their manifests, and a tag of
/// an image fetched more than this many images earlier costs one more GET.
const MAX_FETCHED_ROOTS: usize = 1024;

/// What executing a plan will do with the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanAction {
    /// Copy, then point the target at the root.
    Copy,
    /// The target already holds the root's digest: nothing to do.
    UpToDate,
    /// The target tag holds another digest; copied only with `force`.
    Conflict {
        /// What the tag points at now.
        current: Digest,
    },
}

/// What to do with one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobAction {
    /// Already in the target repository.
    Present,
    /// Mount from another repository of the target registry.
    Mount {
        /// The repository that holds it.
        from: Reference,
    },
    /// Stream from the source and upload.
    Copy,
    /// A foreign (non-distributable) layer, left out.
    Foreign,
}

/// One blob of the graph.
#[derive(Debug, Clone)]
pub struct BlobStep {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// What to do with it.
    pub action: BlobAction,
}

/// What to do with one child manifest.
#[derive(Debug, Clone)]
pub enum ManifestAction {
    /// Already at the target (its blobs too, as registries check on push).
    Present,
    /// Push these exact bytes by digest.
    Push(RawManifest),
}

/// One child manifest of the graph.
#[derive(Debug, Clone)]
pub struct ManifestStep {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// What to do with it.
    pub action: ManifestAction,
}

/// Everything copying one image takes, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The source, as fetched.
    pub source: Reference,
    /// The target: a tag, or a repository alone to push by digest only.
    pub target: Reference,
    /// Digest of the source root manifest.
    pub source_digest: Digest,
    /// The root manifest to push (the source's bytes, or a filtered index).
    pub root: RawManifest,
    /// What the target reference held when planned.
    pub target_current: Option<Digest>,
    /// What executing will do.
    pub action: PlanAction,
    /// Child manifests, children before parents (empty unless copying).
    pub manifests: Vec<ManifestStep>,
    /// Blobs, deduplicated (empty unless copying).
    pub blobs: Vec<BlobStep>,
    /// Platforms kept, when filtering.
    pub platforms_kept: Vec<String>,
    /// Platforms dropped, when filtering.
    pub platforms_dropped: Vec<String>,
    /// Requested platforms the source does not have (kept going by
    /// `platforms_optional`; an error otherwise).
    pub platforms_missing: Vec<String>,
    /// True when executing pushes the root (a copy, or a conflict overridden by `force`).
    pub pushes_root: bool,
    /// True when this run already pushed the root into the target repository
    /// (under another tag): executing only sets the tag, one PUT.
    pub root_present: bool,
    /// The source is a Docker schema 1 image converted to schema 2 (`root`):
    /// its digest, and the config to upload (not in `blobs`).
    pub converted: Option<super::Converted>,
}

/// One blob in a [`PlanSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct BlobLine {
    /// Digest.
    pub digest: Digest,
    /// Size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// `copy`, `skip`, `mount` or `foreign`.
    pub action: &'static str,
    /// Repository mounted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// A plan in numbers, for `--dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// Source digest.
    pub source_digest: Digest,
    /// Digest the target will have.
    pub target_digest: Digest,
    /// `copy`, `up-to-date` or `conflict`.
    pub action: &'static str,
    /// What the target holds now, if anything.
    pub current_digest: Option<Digest>,
    /// Manifests to push (root included).
    pub manifests_to_push: u64,
    /// Manifests already present.
    pub manifests_present: u64,
    /// Blobs to copy.
    pub blobs_to_copy: u64,
    /// Blobs present.
    pub blobs_present: u64,
    /// Blobs to mount.
    pub blobs_to_mount: u64,
    /// Foreign layers left out.
    pub foreign_layers: u64,
    /// Bytes to transfer.
    pub bytes_to_copy: u64,
    /// Platforms kept when filtering.
    pub platforms_kept: Vec<String>,
    /// Platforms dropped when filtering.
    pub platforms_dropped: Vec<String>,
    /// Requested platforms the source does not have.
    pub platforms_missing: Vec<String>,
    /// Every blob with its action.
    pub blobs: Vec<BlobLine>,
}

impl Plan {
    /// True when the root's digest differs from the source's (platforms filtered).
    pub fn digest_changed(&self) -> bool {
        self.root.digest != self.source_digest
    }

    /// The plan in numbers.
    pub fn summary(&self) -> PlanSummary {
        let count =
            |a: fn(&BlobAction) -> bool| self.blobs.iter().filter(|b| a(&b.action)).count() as u64;
        PlanSummary {
            source: self.source.to_string(),
            target: self.target.to_string(),
            source_digest: self.source_digest.clone(),
            target_digest: self.root.digest.clone(),
            action: match self.action {
                PlanAction::Copy => "copy",
                PlanAction::UpToDate => "up-to-date",
                PlanAction::Conflict { .. } => "conflict",
            },
            current_digest: self.target_current.clone(),
            manifests_to_push: self
                .manifests
                .iter()
                .filter(|m| matches!(m.action, ManifestAction::Push(_)))
                .count() as u64
                + u64::from(self.pushes_root),
            manifests_present: self
                .manifests
                .iter()
                .filter(|m| matches!(m.action, ManifestAction::Present))
                .count() as u64,
            blobs_to_copy: count(|a| *a == BlobAction::Copy),
            blobs_present: count(|a| *a == BlobAction::Present),
            blobs_to_mount: count(|a| matches!(a, BlobAction::Mount { .. })),
            foreign_layers: count(|a| *a == BlobAction::Foreign),
            bytes_to_copy: self
                .blobs
                .iter()
                .filter(|b| b.action == BlobAction::Copy)
                .map(|b| b.size)
                .sum(),
            platforms_kept: self.platforms_kept.clone(),
            platforms_dropped: self.platforms_dropped.clone(),
            platforms_missing: self.platforms_missing.clone(),
            blobs: self
                .blobs
                .iter()
                .map(|b| BlobLine {
                    digest: b.digest.clone(),
                    size: b.size,
                    media_type: b.media_type.clone(),
                    action: match &b.action {
                        BlobAction::Present => "skip",
                        BlobAction::Mount { .. } => "mount",
                        BlobAction::Copy => "copy",
                        BlobAction::Foreign => "foreign",
                    },
                    from: match &b.action {
                        BlobAction::Mount { from } => Some(from.to_string()),
                        _ => None,
                    },
                })
                .collect(),
        }
    }
}

/// A manifest reached while walking.
struct Node {
    step: ManifestStep,
    children: Vec<Digest>,
}

impl Copier {
    /// Plan the copy of `source` in `turn` (see [`Copier::copy_in_turn`]):
    /// its manifest fetched by the turn's digest; writes nothing. With
    /// [`Copier::execute`], the same copy as `copy_in_turn`, split where a
    /// caller acts between planning and writing.
    pub async fn plan_in_turn(
        &self,
        turn: &super::Turn,
        source: &Reference,
        target: &Reference,
        options: &CopyOptions,
    ) -> Result<Plan, CopyError> {
        build(self, source, Some(&turn.digest), target, options).await
    }
}

/// Build the plan for copying `source` to `target`.
/// `resolved`: the digest the caller resolved `source`'s tag to; the root is
/// then fetched by that digest (or taken from this run's memory).
/// A plan that would spend the source's pull budget into its floor is a
/// [`CopyError::Deferred`].
pub(super) async fn build(
    copier: &Copier,
    source: &Reference,
    resolved: Option<&Digest>,
    target: &Reference,
    options: &CopyOptions,
) -> Result<Plan, CopyError> {
    build_graph(copier, source, resolved, target, options)
        .await
        .map_err(|e| super::budget::as_deferral(e, &source.to_string()))
}

/// The source's root manifest, fetched by `resolved` (or `source`'s own
/// digest) when given, else by tag; with `convert_schema1`, a Docker
/// schema 1 manifest converted to schema 2 (and what the conversion built).
/// Also the source digest: the schema 1 one for a converted image.
async fn fetch_source_root(
    copier: &Copier,
    source: &Reference,
    resolved: Option<&Digest>,
    options: &CopyOptions,
) -> Result<(RawManifest, Option<super::Converted>, Digest), CopyError> {
    let fetched = match resolved.or(source.digest()) {
        Some(want) => fetch_root(copier, options, &source.with_digest(want.clone())).await,
        None => (copier.client.get_manifest(source).await).map_err(CopyError::from),
    };
    let (fetched, converted) = match fetched {
        Err(CopyError::Registry(e @ crate::registry::Error::Schema1 { .. }))
            if options.convert_schema1 =>
        {
            let (manifest, converted) = copier.convert_schema1(source, &e).await?;
            (manifest, Some(converted))
        }
        other => (other?, None),
    };
    if let (None, Some(want)) = (&converted, source.digest()) {
        verify_digest(&fetched, want, source)?;
    }
    let source_digest = match &converted {
        Some(c) => c.from.clone(),
        None => fetched.digest.clone(),
    };
    Ok((fetched, converted, source_digest))
}

async fn build_graph(
    copier: &Copier,
    source: &Reference,
    resolved: Option<&Digest>,
    target: &Reference,
    options: &CopyOptions,
) -> Result<Plan, CopyError> {
    let client = &copier.client;
    let source = source.clone().or_latest();
    let image = source.to_string();
    refuse_self_copy(&source, target)?;
    copier.ping(&source).await?;
    copier.ping(target).await?;
    let (fetched, converted, source_digest) =
        fetch_source_root(copier, &source, resolved, options).await?;
    let src_repo = source.repository_only();
    let selected = select_platforms(
        client,
        &src_repo,
        &image,
        fetched,
        &source_digest,
        converted.as_ref(),
        options,
    )
    .await?;
    let Selected {
        root,
        kept: platforms_kept,
        dropped: platforms_dropped,
        missing: platforms_missing,
        rewritten,
    } = selected;

    if !platforms_missing.is_empty() && !options.platforms_optional {
        return Err(CopyError::missing_platforms(
            image,
            platforms_missing,
            platforms_kept,
        ));
    }

    let (target, target_current) = target_state(copier, target, &root).await?;
    let action = action_for(target_current.as_ref(), &root.digest);
    let mut plan = Plan {
        source: source.clone(),
        target: target.clone(),
        source_digest,
        root,
        target_current,
        action,
        manifests: Vec::new(),
        blobs: Vec::new(),
        platforms_kept,
        platforms_dropped,
        platforms_missing,
        pushes_root: false,
        root_present: false,
        converted,
    };
    if plan.action == PlanAction::UpToDate
        || (matches!(plan.action, PlanAction::Conflict { .. }) && !options.force)
    {
        return Ok(plan);
    }
    plan.pushes_root = true;
    // This run pushed the root under another tag: its graph is complete,
    // only this tag is set. (Across runs the graph is walked again, a HEAD
    // per child, so that a part lost since is pushed again.)
    if target.tag().is_some() && copier.pushed_in_run(&target, &plan.root.digest) {
        plan.root_present = true;
        return Ok(plan);
    }
    let blob_descs = walk_graph(copier, &mut plan, &image, &rewritten, options).await?;
    plan.blobs = plan_blobs(copier, &src_repo, &target, blob_descs, options).await?;
    Ok(plan)
}

/// What executing will do, given what the target holds.
fn action_for(target_current: Option<&Digest>, root: &Digest) -> PlanAction {
    match target_current {
        Some(d) if d == root => PlanAction::UpToDate,
        Some(d) => PlanAction::Conflict { current: d.clone() },
        None => PlanAction::Copy,
    }
}

/// The root once platforms are selected, and what the selection kept,
/// dropped and missed.
struct Selected {
    root: RawManifest,
    kept: Vec<String>,
    dropped: Vec<String>,
    missing: Vec<String>,
    /// Nested indexes the platform filter rewrote: pushed from here, not fetched.
    rewritten: HashMap<Digest, RawManifest>,
}

/// Platform selection: the source root as it is without a filter, a
/// filtered index, or a single image checked against the filter.
async fn select_platforms(
    client: &crate::registry::Client,
    src_repo: &Reference,
    image: &str,
    fetched: RawManifest,
    source_digest: &Digest,
    converted: Option<&super::Converted>,
    options: &CopyOptions,
) -> Result<Selected, CopyError> {
    let mut selected = Selected {
        root: fetched,
        kept: Vec::new(),
        dropped: Vec::new(),
        missing: Vec::new(),
        rewritten: HashMap::new(),
    };
    if options.platforms.is_empty() {
        return Ok(selected);
    }
    let fetched = &selected.root;
    let parsed = fetched.parse().map_err(|error| CopyError::Manifest {
        image: image.to_string(),
        digest: source_digest.clone(),
        error,
    })?;
    match parsed {
        Manifest::Index(_) => {
            let nested = nested_and_artifacts(client, src_repo, fetched, options).await?;
            select_in_index(&mut selected, image, &nested, options)?;
        }
        Manifest::Image(m) => {
            let config = match converted {
                Some(c) => c.config.clone(),
                None => {
                    client
                        .get_blob_bytes(src_repo, &m.config.digest, MAX_CONFIG_BYTES)
                        .await?
                }
            };
            select_image(&mut selected, image, &m.config.media_type, &config, options)?;
        }
    }
    Ok(selected)
}

/// Filter the index `selected.root` by platform, in place.
fn select_in_index(
    selected: &mut Selected,
    image: &str,
    nested: &HashMap<Digest, RawManifest>,
    options: &CopyOptions,
) -> Result<(), CopyError> {
    let image = image.to_string();
    match filter_index_tree(&selected.root, &options.platforms, nested) {
        Ok(f) => {
            selected.kept = f.kept;
            selected.dropped = f.dropped;
            selected.missing = f.missing;
            selected.rewritten = f
                .rewritten
                .into_iter()
                .map(|m| (m.digest.clone(), m))
                .collect();
            selected.root = f.manifest;
            Ok(())
        }
        Err(FilterError::NoMatch { available }) => Err(CopyError::NoMatchingPlatform {
            image,
            wanted: specs_text(&options.platforms),
            available,
        }),
        Err(FilterError::Malformed(detail)) => Err(CopyError::Invalid {
            image,
            detail: format!("the index cannot be filtered by platform: {detail}"),
        }),
    }
}

/// Check a single image (its `config` bytes, of `config_type`) against the
/// platform filter.
fn select_image(
    selected: &mut Selected,
    image: &str,
    config_type: &str,
    config: &[u8],
    options: &CopyOptions,
) -> Result<(), CopyError> {
    let platform = platform_of_config(config).ok_or_else(|| CopyError::Invalid {
        image: image.to_string(),
        detail: format!(
            "a platform filter was given, but this is a single manifest whose config ({}) \
             names no os/architecture; drop the filter (--platform, or the mirror's \
             `platforms` key) to copy it",
            config_type
        ),
    })?;
    if !options.platforms.iter().any(|s| s.matches(&platform)) {
        return Err(CopyError::PlatformMismatch {
            image: image.to_string(),
            wanted: specs_text(&options.platforms),
            actual: platform_name(&platform),
        });
    }
    selected.kept.push(platform_name(&platform));
    selected.missing = unmatched_specs(&options.platforms, &platform);
    Ok(())
}

/// The target as planned (a repository alone when it names neither tag nor
/// digest), and what it holds now: as the sync's compare step found it
/// moments ago in this run (see [`Copier::note_target`]), else asked.
async fn target_state(
    copier: &Copier,
    target: &Reference,
    root: &RawManifest,
) -> Result<(Reference, Option<Digest>), CopyError> {
    let target = if target.tag().is_none() && target.digest().is_none() {
        target.repository_only()
    } else {
        target.clone()
    };
    let probe = match target.tag() {
        Some(_) => target.without_digest(),
        None => target.with_digest(root.digest.clone()),
    };
    if let Some(current) = copier.shared.present.take_head(&probe) {
        return Ok((target, current));
    }
    let client = &copier.client;
    let target_current = match client.head_manifest(&probe).await? {
        None => None,
        Some(head) => match head.digest {
            Some(d) => Some(d),
            None => Some(client.get_manifest(&probe).await?.digest),
        },
    };
    Ok((target, target_current))
}

/// A manifest of one level of the walk: `None` when the target holds it.
type Fetched = (Descriptor, Option<(RawManifest, Manifest)>);

/// Walk the graph under the root, level by level, fetching manifests
/// concurrently: fills `plan.manifests` and returns the blobs, deduplicated.
async fn walk_graph(
    copier: &Copier,
    plan: &mut Plan,
    image: &str,
    rewritten: &HashMap<Digest, RawManifest>,
    options: &CopyOptions,
) -> Result<Vec<Descriptor>, CopyError> {
    let client = &copier.client;
    let source = &plan.source;
    let dst_repo = plan.target.repository_only();
    let concurrency = options.blob_concurrency.max(1);
    let root_parsed = plan.root.parse().map_err(|error| CopyError::Manifest {
        image: image.to_string(),
        digest: plan.root.digest.clone(),
        error,
    })?;
    let mut seen = Seen {
        nodes: HashMap::new(),
        blob_descs: Vec::new(),
        blobs: HashSet::new(),
        manifests: HashSet::from([plan.root.digest.clone()]),
    };
    let budget = crate::registry::limits::SharedBudget::new(
        crate::registry::limits::PlanBudget::new(client.limits(source)?, source.registry(), image),
    );
    budget.admit(&plan.root, &root_parsed)?;
    let (root_children, root_blobs) = split(&root_parsed);
    let root_child_digests: Vec<Digest> = root_children.iter().map(|d| d.digest.clone()).collect();
    for b in root_blobs {
        let built_here = plan
            .converted
            .as_ref()
            .is_some_and(|c| c.config_digest == b.digest);
        if !built_here && seen.blobs.insert(b.digest.clone()) {
            seen.blob_descs.push(b);
        }
    }
    let mut level: Vec<Descriptor> = root_children
        .into_iter()
        .filter(|d| seen.manifests.insert(d.digest.clone()))
        .collect();
    let mut depth = 1;
    while !level.is_empty() {
        if depth > MAX_DEPTH {
            return Err(CopyError::Invalid {
                image: image.to_string(),
                detail: format!(
                    "indexes are nested more than {MAX_DEPTH} deep; this image cannot be copied"
                ),
            });
        }
        // The manifests the target lacks cost one GET each: checked
        // against the source's pull budget before any is sent.
        let present =
            super::budget::present_at_target(copier, &dst_repo, &level, concurrency).await?;
        let needed = level
            .iter()
            .filter(|d| !present.contains(&d.digest) && !rewritten.contains_key(&d.digest))
            .count() as u64;
        copier.check_pulls(source, image, needed)?;
        let walk = Level {
            client,
            src_repo: source.repository_only(),
            image,
            budget: &budget,
            rewritten,
            present: &present,
            options,
        };
        level = seen.record(walk.fetch(level, concurrency).await?);
        depth += 1;
    }
    plan.manifests = post_order(&root_child_digests, &mut seen.nodes);
    Ok(seen.blob_descs)
}

/// What the walk has reached so far.
struct Seen {
    nodes: HashMap<Digest, Node>,
    /// Blobs to plan, deduplicated.
    blob_descs: Vec<Descriptor>,
    blobs: HashSet<Digest>,
    manifests: HashSet<Digest>,
}

impl Seen {
    /// Record one fetched level; returns the next level (manifests not
    /// reached before).
    fn record(&mut self, fetched: Vec<Fetched>) -> Vec<Descriptor> {
        let mut next = Vec::new();
        for (desc, got) in fetched {
            let (action, children) = match got {
                None => (ManifestAction::Present, Vec::new()),
                Some((raw, parsed)) => {
                    let (kids, blobs) = split(&parsed);
                    for b in blobs {
                        if self.blobs.insert(b.digest.clone()) {
                            self.blob_descs.push(b);
                        }
                    }
                    let child_digests = kids.iter().map(|k| k.digest.clone()).collect();
                    next.extend(
                        kids.into_iter()
                            .filter(|k| self.manifests.insert(k.digest.clone())),
                    );
                    (ManifestAction::Push(raw), child_digests)
                }
            };
            self.nodes
                .insert(desc.digest.clone(), node_of(&desc, action, children));
        }
        next
    }
}

/// The node of one manifest of the walk.
fn node_of(desc: &Descriptor, action: ManifestAction, children: Vec<Digest>) -> Node {
    Node {
        step: ManifestStep {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            action,
        },
        children,
    }
}

/// What fetching one level of the walk needs.
struct Level<'a> {
    client: &'a crate::registry::Client,
    src_repo: Reference,
    image: &'a str,
    budget: &'a crate::registry::limits::SharedBudget,
    rewritten: &'a HashMap<Digest, RawManifest>,
    present: &'a HashSet<Digest>,
    options: &'a CopyOptions,
}

impl Level<'_> {
    /// Fetch, verify and parse the manifests of `level` the target lacks,
    /// `concurrency` at a time, in order.
    async fn fetch(
        &self,
        level: Vec<Descriptor>,
        concurrency: usize,
    ) -> Result<Vec<Fetched>, CopyError> {
        let jobs: Vec<BoxFuture<'_, Result<Fetched, CopyError>>> = level
            .into_iter()
            .map(|desc| self.fetch_one(desc).boxed())
            .collect();
        futures_util::stream::iter(jobs)
            .buffered(concurrency)
            .try_collect()
            .await
    }

    /// One manifest of a level (see [`Level::fetch`]).
    async fn fetch_one(&self, desc: Descriptor) -> Result<Fetched, CopyError> {
        if self.present.contains(&desc.digest) {
            return Ok::<_, CopyError>((desc, None));
        }
        let at_source = self.src_repo.with_digest(desc.digest.clone());
        let mut raw = match self.rewritten.get(&desc.digest) {
            Some(m) => m.clone(),
            None => fetch_child(self.client, self.options, &at_source).await?,
        };
        verify_digest(&raw, &desc.digest, &at_source)?;
        if !is_manifest(&raw.media_type) && is_manifest(&desc.media_type) {
            raw.media_type = desc.media_type.clone();
        }
        let parsed = raw.parse().map_err(|error| CopyError::Manifest {
            image: self.image.to_string(),
            digest: desc.digest.clone(),
            error,
        })?;
        self.budget.admit(&raw, &parsed)?;
        Ok((desc, Some((raw, parsed))))
    }
}

/// Blobs: remember what the source holds (for same-registry mounts), then
/// ask the target about those this run does not know to be there.
async fn plan_blobs(
    copier: &Copier,
    src_repo: &Reference,
    target: &Reference,
    blob_descs: Vec<Descriptor>,
    options: &CopyOptions,
) -> Result<Vec<BlobStep>, CopyError> {
    for b in &blob_descs {
        if !b.is_foreign() {
            copier.remember(src_repo, &b.digest);
        }
    }
    let dst_repo = target.repository_only();
    let concurrency = options.blob_concurrency.max(1);
    let include_foreign = options.include_foreign_layers;
    let jobs: Vec<BoxFuture<'_, Result<BlobStep, CopyError>>> = blob_descs
        .into_iter()
        .map(|b| {
            let dst_repo = &dst_repo;
            async move {
                let action = if b.is_foreign() && !include_foreign {
                    BlobAction::Foreign
                } else if copier
                    .shared
                    .present
                    .blob_present(dst_repo, &b.digest, async {
                        let head = copier.client.head_blob(dst_repo, &b.digest).await?;
                        Ok::<_, CopyError>(head.is_some())
                    })
                    .await?
                {
                    copier.remember(dst_repo, &b.digest);
                    BlobAction::Present
                } else if let Some(from) = copier.known_elsewhere(dst_repo, &b.digest) {
                    BlobAction::Mount { from }
                } else {
                    BlobAction::Copy
                };
                Ok::<_, CopyError>(BlobStep {
                    digest: b.digest,
                    size: b.size,
                    media_type: b.media_type,
                    action,
                })
            }
            .boxed()
        })
        .collect();
    futures_util::stream::iter(jobs)
        .buffered(concurrency * 2)
        .try_collect()
        .await
}

/// The nested indexes of `index` and, when referrers are copied, the
/// artifacts listed in it, for the platform filter.
async fn nested_and_artifacts(
    client: &crate::registry::Client,
    repo: &Reference,
    index: &RawManifest,
    options: &CopyOptions,
) -> Result<HashMap<Digest, RawManifest>, CopyError> {
    let mut nested = fetch_nested_indexes(client, repo, index).await?;
    if options.referrers.enabled {
        super::filter::fetch_index_artifacts(client, repo, index, &mut nested).await?;
    }
    Ok(nested)
}

/// Refuse a target that is the source itself: the same repository and the
/// same tag, or no tag at all. A platform filter would replace the source
/// index by a filtered one; without it the copy does nothing. Another tag of
/// the same repository (a retag) is fine.
pub fn refuse_self_copy(source: &Reference, target: &Reference) -> Result<(), CopyError> {
    let same_repo = source.same_repository(target);
    if same_repo && (target.tag().is_none() || target.tag() == source.tag()) {
        return Err(CopyError::Invalid {
            image: source.to_string(),
            detail: format!(
                "the target {target} is the source itself: nothing would be copied, and a \
                 platform filter would replace the source's index; give another repository or \
                 another tag"
            ),
        });
    }
    Ok(())
}

/// A manifest's child manifests and blobs (`subject` is neither: it is
/// another image, left as it is).
fn split(m: &Manifest) -> (Vec<Descriptor>, Vec<Descriptor>) {
    match m {
        Manifest::Index(i) => (i.manifests.clone(), Vec::new()),
        Manifest::Image(img) => {
            let blobs = std::iter::once(img.config.clone())
                .chain(img.layers.iter().cloned())
                .collect();
            (Vec::new(), blobs)
        }
    }
}

/// Manifests in push order: every manifest after the manifests it lists.
fn post_order(roots: &[Digest], nodes: &mut HashMap<Digest, Node>) -> Vec<ManifestStep> {
    fn visit(
        d: &Digest,
        nodes: &mut HashMap<Digest, Node>,
        done: &mut HashSet<Digest>,
        out: &mut Vec<ManifestStep>,
    ) {
        if !done.insert(d.clone()) {
            return;
        }
        let children = match nodes.get(d) {
            Some(n) => n.children.clone(),
            None => return,
        };
        for c in &children {
            visit(c, nodes, done, out);
        }
        if let Some(n) = nodes.remove(d) {
            out.push(n.step);
        }
    }
    let mut out = Vec::new();
    let mut done = HashSet::new();
    for r in roots {
        visit(r, nodes, &mut done, &mut out);
    }
    out
}

impl Copier {
    /// The sync's compare step found `current` at the target tag `target`
    /// (`None`: no such tag): the next plan of that tag in this run takes
    /// it instead of asking again (see [`super::present`]).
    pub fn note_target(&self, target: &Reference, current: Option<Digest>) {
        self.shared.present.note_head(target, current);
    }

    /// Plan and execute one copy. When the target refuses a manifest
    /// because a blob is unknown and this run remembered blobs of that
    /// repository (one may have been deleted since), the copy is planned
    /// and executed once more with that memory cleared: every blob is asked
    /// for again and sent if missing.
    pub(super) async fn plan_and_execute(
        &self,
        source: &Reference,
        resolved: Option<&Digest>,
        target: &Reference,
        options: &CopyOptions,
    ) -> Result<super::CopyReport, CopyError> {
        let plan = build(self, source, resolved, target, options).await?;
        match self.execute(&plan, options).await {
            Err(e) if blob_unknown(&e) && self.shared.present.forget_repository(&plan.target) => {
                tracing::info!(target_ref = %plan.target, error = %e, "a blob this run remembered in the target repository is gone; planning again");
                let plan = build(self, source, resolved, target, options).await?;
                self.forget_blob_work(&plan);
                self.execute(&plan, options).await
            }
            other => other,
        }
    }

    /// Forget this run's finished transfers of the blobs `plan` copies or
    /// mounts, so that they are sent again rather than taken as done.
    fn forget_blob_work(&self, plan: &Plan) {
        let dst = plan.target.repository_only();
        for b in &plan.blobs {
            if !matches!(b.action, BlobAction::Copy | BlobAction::Mount { .. }) {
                continue;
            }
            let key = super::work::WorkKey::at(&dst, &b.digest);
            if let Some(work) = self.shared.blobs.finished(&key) {
                self.shared
                    .blobs
                    .forget(&self.engine.tables().blobs, &key, &work);
            }
        }
    }

    /// The manifest `at` names by digest: from this run's memory, else
    /// fetched and verified, then remembered for the rest of the run (up to
    /// [`MAX_FETCHED_ROOTS`] manifests).
    pub(super) async fn fetch_root(&self, at: &Reference) -> Result<RawManifest, CopyError> {
        let want = at.digest().cloned().ok_or_else(|| CopyError::Invalid {
            image: at.to_string(),
            detail: "a digest is needed to fetch by digest".to_string(),
        })?;
        let key = super::work::WorkKey::at(at, &want);
        let cached = {
            let fetched = self
                .shared
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            fetched.get(&key).cloned()
        };
        if let Some(raw) = cached {
            return Ok(raw);
        }
        let raw = self.client.get_manifest(at).await?;
        verify_digest(&raw, &want, at)?;
        let mut fetched = self
            .shared
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if fetched.len() >= MAX_FETCHED_ROOTS {
            fetched.clear();
        }
        fetched.insert(key, raw.clone());
        Ok(raw)
    }
}

/// The root by digest: once for every target when the source image fans
/// out (see [`super::SourceShare`]), else from this run's memory or one GET.
pub(super) async fn fetch_root(
    copier: &Copier,
    options: &CopyOptions,
    at: &Reference,
) -> Result<RawManifest, CopyError> {
    match (&options.fan_out, at.digest()) {
        (Some(share), Some(want)) => {
            let raw = share.manifest(&copier.client, at).await?;
            verify_digest(&raw, want, at)?;
            Ok(raw)
        }
        _ => copier.fetch_root(at).await,
    }
}

/// A child manifest by digest: once for every target when the source
/// image fans out (see [`super::SourceShare`]), else one GET.
async fn fetch_child(
    client: &crate::registry::Client,
    options: &CopyOptions,
    at: &Reference,
) -> Result<RawManifest, Error> {
    match &options.fan_out {
        Some(share) => share.manifest(client, at).await,
        None => client.get_manifest(at).await,
    }
}

/// True when `e` is a manifest refused because a blob (or child) it
/// references is unknown to the target repository.
fn blob_unknown(e: &CopyError) -> bool {
    match e {
        CopyError::Registry(e) => e
            .codes()
            .iter()
            .any(|c| matches!(c.code.as_str(), "MANIFEST_BLOB_UNKNOWN" | "BLOB_UNKNOWN")),
        CopyError::Shared(inner) => blob_unknown(inner),
        _ => false,
    }
}

/// Fail when manifest bytes do not have the digest they were asked by.
fn verify_digest(raw: &RawManifest, want: &Digest, at: &Reference) -> Result<(), CopyError> {
    let actual = want.of_same_algorithm(&raw.bytes);
    if actual != *want {
        return Err(CopyError::Registry(Error::DigestMismatch {
            op: Op::GetManifest,
            target: at.to_string(),
            expected: want.clone(),
            actual,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn node(n: u8, children: &[u8]) -> (Digest, Node) {
        (
            d(n),
            Node {
                step: ManifestStep {
                    digest: d(n),
                    media_type: String::new(),
                    size: 0,
                    action: ManifestAction::Present,
                },
                children: children.iter().map(|c| d(*c)).collect(),
            },
        )
    }

    #[test]
    fn children_come_before_parents() {
        // root -> [1, 2]; 1 -> [2, 3]; 3 -> [4]. 2 is listed by the root first,
        // yet must be pushed before 1 which also lists it.
        let mut nodes: HashMap<Digest, Node> =
            [node(1, &[2, 3]), node(2, &[]), node(3, &[4]), node(4, &[])]
                .into_iter()
                .collect();
        let order: Vec<Digest> = post_order(&[d(1), d(2)], &mut nodes)
            .into_iter()
            .map(|s| s.digest)
            .collect();
        assert_eq!(order, vec![d(2), d(4), d(3), d(1)]);
        let pos = |x: u8| order.iter().position(|o| *o == d(x)).unwrap();
        assert!(pos(2) < pos(1) && pos(3) < pos(1) && pos(4) < pos(3));
    }

    #[test]
    fn split_leaves_subject_alone() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.sig",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{c}","size":2}},
            "layers":[{{"mediaType":"application/x.sig","digest":"{l}","size":3}}],
            "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{s}","size":4}}}}"#,
            c = d(1),
            l = d(2),
            s = d(3)
        );
        let m = Manifest::parse(
            "application/vnd.oci.image.manifest.v1+json",
            body.as_bytes(),
        )
        .unwrap();
        let (kids, blobs) = split(&m);
        assert!(kids.is_empty());
        assert_eq!(
            blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(),
            vec![d(1), d(2)]
        );
    }

    #[test]
    fn verify_digest_rejects_other_bytes() {
        let raw = RawManifest::new(
            bytes::Bytes::from_static(b"{}"),
            Some("application/vnd.oci.image.manifest.v1+json"),
        );
        let at = Reference::parse("localhost:1/a").unwrap();
        assert!(verify_digest(&raw, &raw.digest.clone(), &at).is_ok());
        let e = verify_digest(&raw, &d(9), &at).unwrap_err().to_string();
        assert!(
            e.contains("localhost:1/a") && e.contains("nothing was written"),
            "{e}"
        );
    }

    /// A copier over an in-memory store, its hosts taken as registries.
    fn memory_copier(hosts: &[&str]) -> (Copier, Arc<crate::registry::memory::Memory>) {
        let memory = Arc::new(crate::registry::memory::Memory::new());
        let client =
            crate::registry::Client::with_transport(Default::default(), memory.clone()).unwrap();
        let copier = Copier::new(client);
        for host in hosts {
            let ok = super::super::PingCell::new_with(Some(Ok(())));
            let mut pinged = copier.shared.pinged.lock().unwrap();
            pinged.insert(host.to_string(), Arc::new(ok));
        }
        (copier, memory)
    }

    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

    fn desc(media_type: &str, d: &Digest, size: usize) -> serde_json::Value {
        serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": size})
    }

    /// An index of one image per architecture, each with its config and a
    /// layer of its own plus one layer they share; pushed to `src` (tagged
    /// `v1`). Returns the index and the digests of the layers.
    fn two_arch_index(
        memory: &crate::registry::memory::Memory,
        src: &Reference,
    ) -> (RawManifest, Vec<Digest>) {
        let shared = memory.add_blob(src, b"shared layer");
        let mut children = Vec::new();
        let mut layers = vec![shared.clone()];
        for arch in ["amd64", "arm64"] {
            let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
            let config_digest = memory.add_blob(src, config.as_bytes());
            let own = memory.add_blob(src, format!("{arch} layer").as_bytes());
            layers.push(own.clone());
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc("application/vnd.oci.image.config.v1+json", &config_digest, config.len()),
                "layers": [
                    desc("application/vnd.oci.image.layer.v1.tar", &shared, 12),
                    desc("application/vnd.oci.image.layer.v1.tar", &own, arch.len() + 6),
                ],
            });
            let raw = RawManifest::new(
                serde_json::to_vec(&body).unwrap().into(),
                Some(OCI_MANIFEST),
            );
            memory.add_manifest(&src.with_digest(raw.digest.clone()), &raw);
            let mut d = desc(OCI_MANIFEST, &raw.digest, raw.bytes.len());
            d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            children.push(d);
        }
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children});
        let raw = RawManifest::new(serde_json::to_vec(&index).unwrap().into(), Some(OCI_INDEX));
        memory.add_manifest(&src.with_tag("v1").unwrap(), &raw);
        (raw, layers)
    }

    #[tokio::test]
    async fn plans_an_index_with_children_against_what_the_target_holds() {
        let (copier, memory) = memory_copier(&["src.example", "dst.example"]);
        let src = Reference::parse("src.example/team/app").unwrap();
        let dst = Reference::parse("dst.example/mirror/app:v1").unwrap();
        let (index, layers) = two_arch_index(&memory, &src);
        // The target already holds the shared layer.
        memory.add_blob(&dst.repository_only(), b"shared layer");

        let plan = copier
            .plan(&src.with_tag("v1").unwrap(), &dst, &CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(plan.action, PlanAction::Copy);
        assert_eq!(plan.source_digest, index.digest);
        assert_eq!(plan.manifests.len(), 2, "{:?}", plan.manifests);
        assert!(
            plan.manifests
                .iter()
                .all(|m| matches!(m.action, ManifestAction::Push(_)))
        );
        // Two configs and three layers, each once.
        assert_eq!(plan.blobs.len(), 5);
        for b in &plan.blobs {
            let want = if b.digest == layers[0] {
                BlobAction::Present
            } else {
                BlobAction::Copy
            };
            assert_eq!(b.action, want, "{}", b.digest);
        }
        assert_eq!(memory.calls("put_manifest"), 0, "planning writes nothing");
        assert_eq!(memory.calls("upload_blob"), 0, "planning writes nothing");
    }

    #[tokio::test]
    async fn root_manifests_kept_for_further_tags_are_bounded() {
        let (copier, memory) = memory_copier(&["src.example"]);
        let src = Reference::parse("src.example/team/app").unwrap();
        let config = d(1);
        let refs: Vec<Reference> = (0..=MAX_FETCHED_ROOTS)
            .map(|i| {
                let body = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": desc("application/vnd.oci.image.config.v1+json", &config, 1),
                    "layers": [],
                    "annotations": {"n": i.to_string()},
                });
                let raw = RawManifest::new(
                    serde_json::to_vec(&body).unwrap().into(),
                    Some(OCI_MANIFEST),
                );
                let at = src.with_digest(raw.digest.clone());
                memory.add_manifest(&at, &raw);
                at
            })
            .collect();
        copier.fetch_root(&refs[0]).await.unwrap();
        copier.fetch_root(&refs[0]).await.unwrap();
        assert_eq!(memory.calls("get_manifest"), 1, "kept for a further tag");
        for r in &refs[1..] {
            copier.fetch_root(r).await.unwrap();
        }
        let fetched = memory.calls("get_manifest");
        assert_eq!(fetched, MAX_FETCHED_ROOTS + 1);
        // The last one started the memory afresh: it is kept, the first is not.
        copier.fetch_root(&refs[MAX_FETCHED_ROOTS]).await.unwrap();
        assert_eq!(memory.calls("get_manifest"), fetched);
        copier.fetch_root(&refs[0]).await.unwrap();
        assert_eq!(memory.calls("get_manifest"), fetched + 1);
    }

    #[tokio::test]
    async fn plans_mounts_within_a_registry_and_nothing_when_up_to_date() {
        let (copier, memory) = memory_copier(&["reg.example"]);
        let src = Reference::parse("reg.example/team/app").unwrap();
        let dst = Reference::parse("reg.example/mirror/app:v1").unwrap();
        let (index, _) = two_arch_index(&memory, &src);

        let plan = copier
            .plan(&src.with_tag("v1").unwrap(), &dst, &CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(plan.blobs.len(), 5);
        for b in &plan.blobs {
            assert_eq!(
                b.action,
                BlobAction::Mount { from: src.clone() },
                "{}",
                b.digest
            );
        }

        // Once the target tag holds the index, there is nothing to do.
        memory.add_manifest(&dst, &index);
        let plan = copier
            .new_run()
            .plan(&src.with_tag("v1").unwrap(), &dst, &CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(plan.action, PlanAction::UpToDate);
        assert!(plan.blobs.is_empty() && plan.manifests.is_empty());
    }
}
