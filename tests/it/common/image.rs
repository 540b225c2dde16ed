//! Deterministic test images built in memory: blobs, configs, image manifests,
//! indexes / manifest lists, buildx-style attestations, nested indexes,
//! artifacts with a subject, foreign layers, and OCI image layouts on disk.
//!
//! Everything is a pure function of its inputs: the same seeds give the same
//! bytes and therefore the same digests, so tests know expected digests.

use std::path::Path;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::sha256_digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_FOREIGN_LAYER: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Media-type family of manifests built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        }
    }
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }
    pub fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER,
            Format::Docker => DOCKER_LAYER,
        }
    }
    pub fn foreign_layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_FOREIGN_LAYER,
            Format::Docker => DOCKER_FOREIGN_LAYER,
        }
    }
}

/// An OS/architecture pair as found in index entries and image configs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub os_version: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`. Panics on malformed test input.
    pub fn parse(s: &str) -> Platform {
        let parts: Vec<&str> = s.split('/').collect();
        assert!(
            (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty()),
            "test platform {s:?} must look like os/arch[/variant]"
        );
        Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        }
    }

    pub fn with_os_version(mut self, v: &str) -> Platform {
        self.os_version = Some(v.to_string());
        self
    }

    /// The `platform` object of an index entry.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("architecture".into(), json!(self.architecture));
        m.insert("os".into(), json!(self.os));
        if let Some(v) = &self.os_version {
            m.insert("os.version".into(), json!(v));
        }
        if let Some(v) = &self.variant {
            m.insert("variant".into(), json!(v));
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Content-addressed bytes with a media type (layer, config, attestation…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub data: Bytes,
    pub digest: String,
    /// Foreign URLs: such a layer is referenced but never pushed.
    pub urls: Vec<String>,
    pub annotations: Vec<(String, String)>,
}

impl Blob {
    pub fn new(media_type: &str, data: impl Into<Bytes>) -> Blob {
        let data = data.into();
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
            urls: Vec::new(),
            annotations: Vec::new(),
        }
    }

    /// `size` pseudo-random bytes determined by `seed` (same seed, same blob).
    pub fn random(media_type: &str, seed: &str, size: usize) -> Blob {
        Blob::new(media_type, pseudo_random_bytes(seed, size))
    }

    /// A layer of `format`'s layer media type.
    pub fn layer(format: Format, seed: &str, size: usize) -> Blob {
        Blob::random(format.layer_type(), seed, size)
    }

    /// A foreign (non-distributable) layer pointing at `url`; not pushed.
    pub fn foreign(format: Format, seed: &str, size: usize, url: &str) -> Blob {
        let mut b = Blob::random(format.foreign_layer_type(), seed, size);
        b.urls.push(url.to_string());
        b
    }

    /// An uncompressed tar layer holding `files` (path, content), which real
    /// container runtimes can unpack; its diff ID is its digest.
    pub fn tar_layer(format: Format, files: &[(&str, &[u8])]) -> Blob {
        let media_type = match format {
            Format::Oci => "application/vnd.oci.image.layer.v1.tar",
            Format::Docker => "application/vnd.docker.image.rootfs.diff.tar",
        };
        Blob::new(media_type, ustar(files))
    }

    /// The OCI empty descriptor payload `{}`.
    pub fn empty_config() -> Blob {
        Blob::new(OCI_EMPTY, Bytes::from_static(b"{}"))
    }

    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
    }

    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn descriptor(&self) -> Value {
        let mut m = Map::new();
        m.insert("mediaType".into(), json!(self.media_type));
        m.insert("digest".into(), json!(self.digest));
        m.insert("size".into(), json!(self.data.len()));
        if !self.urls.is_empty() {
            m.insert("urls".into(), json!(self.urls));
        }
        if !self.annotations.is_empty() {
            let a: Map<String, Value> = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            m.insert("annotations".into(), Value::Object(a));
        }
        Value::Object(m)
    }
}

/// A ustar archive of regular files (mode 0644, owner 0, mtime 0).
pub fn ustar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in files {
        assert!(path.len() < 100, "test tar paths stay short: {path}");
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        let field = |h: &mut [u8; 512], at: usize, text: &str| {
            h[at..at + text.len()].copy_from_slice(text.as_bytes());
        };
        field(&mut h, 100, "0000644\0");
        field(&mut h, 108, "0000000\0");
        field(&mut h, 116, "0000000\0");
        field(&mut h, 124, &format!("{:011o}\0", data.len()));
        field(&mut h, 136, "00000000000\0");
        field(&mut h, 148, "        ");
        h[156] = b'0';
        field(&mut h, 257, "ustar\0");
        field(&mut h, 263, "00");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        field(&mut h, 148, &format!("{sum:06o}\0 "));
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// SplitMix64 stream seeded from the SHA-256 of `seed`.
pub fn pseudo_random_bytes(seed: &str, size: usize) -> Vec<u8> {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(seed.as_bytes());
    let mut state = u64::from_le_bytes(h[..8].try_into().expect("8 bytes of a sha256"));
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(size);
    out
}

pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Exact manifest bytes with media type and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Bytes,
    pub digest: String,
}

impl Manifest {
    pub fn from_json(media_type: &str, value: &Value) -> Manifest {
        let bytes = Bytes::from(serde_json::to_vec(value).expect("serializing test JSON"));
        Manifest {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).expect("test manifests are JSON")
    }
}

/// An image (or artifact) manifest with the blobs it references.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Manifest,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// Platform used when the image is listed in an index.
    pub platform: Option<Platform>,
    /// Annotations of its index entry.
    pub entry_annotations: Vec<(String, String)>,
}

impl Image {
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Config then layers, foreign layers excluded (what a registry must hold).
    pub fn pushable_blobs(&self) -> Vec<&Blob> {
        std::iter::once(&self.config)
            .chain(self.layers.iter())
            .filter(|b| !b.is_foreign())
            .collect()
    }
}

/// An index / manifest list with its children.
#[derive(Clone, Debug)]
pub struct Index {
    pub manifest: Manifest,
    pub children: Vec<Node>,
    pub platform: Option<Platform>,
    pub entry_annotations: Vec<(String, String)>,
}

/// A multi-arch image as built by [`ImageSet::multi_arch`].
pub type MultiArch = Index;

/// Anything a tag can point at.
#[derive(Clone, Debug)]
pub enum Node {
    Image(Image),
    Index(Index),
}

impl Node {
    pub fn manifest(&self) -> &Manifest {
        match self {
            Node::Image(i) => &i.manifest,
            Node::Index(i) => &i.manifest,
        }
    }

    pub fn digest(&self) -> &str {
        &self.manifest().digest
    }

    fn entry(&self) -> Value {
        let (m, platform, annotations) = match self {
            Node::Image(i) => (&i.manifest, &i.platform, &i.entry_annotations),
            Node::Index(i) => (&i.manifest, &i.platform, &i.entry_annotations),
        };
        let mut e = Map::new();
        e.insert("mediaType".into(), json!(m.media_type));
        e.insert("digest".into(), json!(m.digest));
        e.insert("size".into(), json!(m.size()));
        if let Some(p) = platform {
            e.insert("platform".into(), p.to_json());
        }
        if !annotations.is_empty() {
            let a: Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            e.insert("annotations".into(), Value::Object(a));
        }
        Value::Object(e)
    }

    /// Every manifest in push order: children before their parents, this node last.
    pub fn manifests_in_push_order(&self) -> Vec<&Manifest> {
        let mut out = Vec::new();
        collect_manifests(self, &mut out);
        out
    }

    /// Every distinct pushable blob reachable from this node (foreign layers excluded).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = Vec::new();
        collect_blobs(self, &mut out);
        out
    }
}

fn collect_manifests<'a>(node: &'a Node, out: &mut Vec<&'a Manifest>) {
    if let Node::Index(i) = node {
        for c in &i.children {
            collect_manifests(c, out);
        }
    }
    if !out.iter().any(|m| m.digest == node.digest()) {
        out.push(node.manifest());
    }
}

fn collect_blobs<'a>(node: &'a Node, out: &mut Vec<&'a Blob>) {
    match node {
        Node::Image(i) => {
            for b in i.pushable_blobs() {
                if !out.iter().any(|x| x.digest == b.digest) {
                    out.push(b);
                }
            }
        }
        Node::Index(i) => {
            for c in &i.children {
                collect_blobs(c, out);
            }
        }
    }
}

impl Index {
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    pub fn bytes(&self) -> &Bytes {
        &self.manifest.bytes
    }

    /// Platform images (children that are images and not attestations/artifacts).
    pub fn images(&self) -> Vec<&Image> {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Image(i) if !is_attestation(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    /// Attestation manifests listed in this index.
    pub fn attestations(&self) -> Vec<&Image> {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Image(i) if is_attestation(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    /// The child image for `platform` (`os/arch[/variant]`).
    pub fn image_for(&self, platform: &str) -> Option<&Image> {
        let p = Platform::parse(platform);
        self.images()
            .into_iter()
            .find(|i| i.platform.as_ref() == Some(&p))
    }

    pub fn to_node(&self) -> Node {
        Node::Index(self.clone())
    }

    /// All manifests, children first, this index last.
    pub fn manifests_in_push_order(&self) -> Vec<Manifest> {
        self.to_node()
            .manifests_in_push_order()
            .into_iter()
            .cloned()
            .collect()
    }

    /// All distinct pushable blobs.
    pub fn blobs(&self) -> Vec<Blob> {
        self.to_node().blobs().into_iter().cloned().collect()
    }
}

fn is_attestation(i: &Image) -> bool {
    i.entry_annotations
        .iter()
        .any(|(k, v)| k == "vnd.docker.reference.type" && v == "attestation-manifest")
}

/// Builds one image manifest.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    format: Format,
    platform: Option<Platform>,
    layers: Vec<Blob>,
    labels: Vec<(String, String)>,
    manifest_annotations: Vec<(String, String)>,
}

impl ImageBuilder {
    pub fn new(format: Format) -> ImageBuilder {
        ImageBuilder {
            format,
            platform: None,
            layers: Vec::new(),
            labels: Vec::new(),
            manifest_annotations: Vec::new(),
        }
    }

    /// Platform of the config and of the index entry.
    pub fn platform(mut self, platform: &str) -> Self {
        self.platform = Some(Platform::parse(platform));
        self
    }

    pub fn platform_value(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    pub fn layer(mut self, blob: Blob) -> Self {
        self.layers.push(blob);
        self
    }

    /// A pseudo-random layer (`seed` decides content; the same seed in another
    /// image gives a shared layer).
    pub fn random_layer(mut self, seed: &str, size: usize) -> Self {
        self.layers.push(Blob::layer(self.format, seed, size));
        self
    }

    pub fn foreign_layer(mut self, seed: &str, size: usize, url: &str) -> Self {
        self.layers
            .push(Blob::foreign(self.format, seed, size, url));
        self
    }

    /// A config label (makes otherwise identical images distinct).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    /// An annotation in the manifest itself (OCI only).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.manifest_annotations
            .push((key.to_string(), value.to_string()));
        self
    }

    pub fn build(self) -> Image {
        let platform = self
            .platform
            .clone()
            .unwrap_or_else(|| Platform::parse("linux/amd64"));
        let mut cfg = Map::new();
        cfg.insert("architecture".into(), json!(platform.architecture));
        cfg.insert("os".into(), json!(platform.os));
        if let Some(v) = &platform.os_version {
            cfg.insert("os.version".into(), json!(v));
        }
        if let Some(v) = &platform.variant {
            cfg.insert("variant".into(), json!(v));
        }
        cfg.insert("created".into(), json!("2024-01-01T00:00:00Z"));
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        cfg.insert(
            "config".into(),
            json!({"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Labels": labels}),
        );
        // Uncompressed tar layers (see [`Blob::tar_layer`]) get their real
        // diff ID, so that container runtimes can unpack them; other layers
        // are random bytes with a made-up one.
        let diff_ids: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                if l.media_type.ends_with(".tar") {
                    l.digest.clone()
                } else {
                    sha256_digest(format!("diff:{}", l.digest).as_bytes())
                }
            })
            .collect();
        cfg.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let config = Blob::new(
            self.format.config_type(),
            serde_json::to_vec(&Value::Object(cfg)).expect("serializing a test config"),
        );
        let mut m = Map::new();
        m.insert("schemaVersion".into(), json!(2));
        m.insert("mediaType".into(), json!(self.format.manifest_type()));
        m.insert("config".into(), config.descriptor());
        m.insert(
            "layers".into(),
            Value::Array(self.layers.iter().map(Blob::descriptor).collect()),
        );
        if !self.manifest_annotations.is_empty() {
            let a: Map<String, Value> = self
                .manifest_annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            m.insert("annotations".into(), Value::Object(a));
        }
        let manifest = Manifest::from_json(self.format.manifest_type(), &Value::Object(m));
        Image {
            manifest,
            config,
            layers: self.layers,
            platform: self.platform,
            entry_annotations: Vec::new(),
        }
    }
}

/// A buildx-style attestation manifest for `image` (always OCI media types, as
/// buildx produces them), listed with platform `unknown/unknown`.
pub fn attestation_for(image: &Image, seed: &str) -> Image {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": seed, "digest": {"sha256": image.digest().trim_start_matches("sha256:")}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": seed},
    });
    let mut layer = Blob::new(
        IN_TOTO,
        serde_json::to_vec(&statement).expect("serializing an in-toto statement"),
    );
    layer.annotations.push((
        "in-toto.io/predicate-type".to_string(),
        "https://spdx.dev/Document".to_string(),
    ));
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        }))
        .expect("serializing an attestation config"),
    );
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        }),
    );
    Image {
        manifest,
        config,
        layers: vec![layer],
        platform: Some(Platform::parse("unknown/unknown")),
        entry_annotations: vec![
            (
                "vnd.docker.reference.digest".to_string(),
                image.digest().to_string(),
            ),
            (
                "vnd.docker.reference.type".to_string(),
                "attestation-manifest".to_string(),
            ),
        ],
    }
}

/// An OCI artifact manifest (`artifactType`, empty config, one layer) whose
/// `subject` is `subject`.
pub fn artifact_for(subject: &Manifest, artifact_type: &str, payload: Blob) -> Image {
    let config = Blob::empty_config();
    let mut config_desc = config.descriptor();
    config_desc["data"] = json!("e30=");
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config_desc,
            "layers": [payload.descriptor()],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size()},
        }),
    );
    Image {
        manifest,
        config,
        layers: vec![payload],
        platform: None,
        entry_annotations: Vec::new(),
    }
}

/// Builds an index / manifest list.
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    format: Format,
    children: Vec<Node>,
    annotations: Vec<(String, String)>,
}

impl IndexBuilder {
    pub fn new(format: Format) -> IndexBuilder {
        IndexBuilder {
            format,
            children: Vec::new(),
            annotations: Vec::new(),
        }
    }

    /// Adds an image entry (with its platform, if any).
    pub fn image(mut self, image: Image) -> Self {
        self.children.push(Node::Image(image));
        self
    }

    /// Adds a buildx-style attestation for `image` (which should also be listed).
    pub fn attestation_for(mut self, image: &Image, seed: &str) -> Self {
        self.children
            .push(Node::Image(attestation_for(image, seed)));
        self
    }

    /// Adds a nested index entry (an index inside the index).
    pub fn nested(mut self, index: Index) -> Self {
        self.children.push(Node::Index(index));
        self
    }

    /// An annotation on the index itself (OCI only).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }

    pub fn build(self) -> Index {
        let mut m = Map::new();
        m.insert("schemaVersion".into(), json!(2));
        m.insert("mediaType".into(), json!(self.format.index_type()));
        m.insert(
            "manifests".into(),
            Value::Array(self.children.iter().map(Node::entry).collect()),
        );
        if !self.annotations.is_empty() {
            let a: Map<String, Value> = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            m.insert("annotations".into(), Value::Object(a));
        }
        Index {
            manifest: Manifest::from_json(self.format.index_type(), &Value::Object(m)),
            children: self.children,
            platform: None,
            entry_annotations: Vec::new(),
        }
    }
}

/// Ready-made image sets.
pub struct ImageSet;

impl ImageSet {
    /// One single-platform image named by `name_seed`: a base layer shared by
    /// every image of the same platform (seed `base/<platform>`, 2 KiB) and an
    /// app layer specific to `name_seed` (1 KiB).
    pub fn image(name_seed: &str, platform: &str, format: Format) -> Image {
        ImageBuilder::new(format)
            .platform(platform)
            .random_layer(&format!("base/{platform}"), 2048)
            .random_layer(&format!("{name_seed}/{platform}/app"), 1024)
            .label("org.opencontainers.image.title", name_seed)
            .build()
    }

    /// A multi-arch index over `platforms` (each built by [`ImageSet::image`]),
    /// optionally followed by one attestation per platform image.
    pub fn multi_arch(
        name_seed: &str,
        platforms: &[&str],
        with_attestations: bool,
        format: Format,
    ) -> MultiArch {
        let images: Vec<Image> = platforms
            .iter()
            .map(|p| ImageSet::image(name_seed, p, format))
            .collect();
        let mut b = IndexBuilder::new(format);
        for img in &images {
            b = b.image(img.clone());
        }
        if with_attestations {
            for (img, p) in images.iter().zip(platforms) {
                b = b.attestation_for(img, &format!("{name_seed}/{p}/sbom"));
            }
        }
        b.build()
    }
}

/// Writes an OCI image layout of `node` to `dir` with tag `tag`
/// (`oci-layout`, `index.json` with `org.opencontainers.image.ref.name`,
/// `blobs/sha256/…`). Foreign layers are not written.
pub fn write_oci_layout(dir: &Path, node: &Node, tag: &str) -> std::io::Result<()> {
    let blobs_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let write = |digest: &str, data: &[u8]| -> std::io::Result<()> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        std::fs::write(blobs_dir.join(hex), data)
    };
    for b in node.blobs() {
        write(&b.digest, &b.data)?;
    }
    for m in node.manifests_in_push_order() {
        write(&m.digest, &m.bytes)?;
    }
    let top = node.manifest();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": top.media_type,
            "digest": top.digest,
            "size": top.size(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("serializing index.json"),
    )
}
