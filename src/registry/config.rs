//! Per-registry settings: the `[[registry]]` table of the config file, also
//! built from command-line flags by the one-shot commands.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::profiles::{Profile, ProfileOverride, UploadMode};
use super::upload_plan::MAX_PART;

/// How to speak to a registry's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// HTTPS, certificate verified against the system roots plus `ca_file`.
    #[default]
    Verify,
    /// HTTPS without certificate verification (testing only).
    SkipVerify,
    /// Plain HTTP.
    PlainHttp,
}

/// How a registry is authenticated (`[[registry]] auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Amazon ECR: `GetAuthorizationToken` with the AWS default credential chain.
    Ecr,
    /// Amazon ECR Public (`public.ecr.aws`): `ecr-public:GetAuthorizationToken`
    /// in `us-east-1` with the same chain.
    EcrPublic,
    /// Azure Container Registry: a Microsoft Entra ID token exchanged for an
    /// ACR refresh token.
    Acr,
    /// Google Artifact Registry / GCR: Application Default Credentials.
    Gar,
    /// Static credentials: the `[[registry]]` keys, auth files, helpers.
    Basic,
    /// No credentials at all, even when an auth file has some.
    Anonymous,
}

impl AuthMode {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Ecr => "ecr",
            AuthMode::EcrPublic => "ecr-public",
            AuthMode::Acr => "acr",
            AuthMode::Gar => "gar",
            AuthMode::Basic => "basic",
            AuthMode::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings for one registry host.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry host as written in image references (`docker.io`, `ghcr.io`,
    /// `registry.example.com:5000`).
    pub host: String,
    /// Transport: `verify` (default), `skip-verify` or `plain-http`. Loopback
    /// hosts default to `plain-http`, as Docker does.
    pub tls: Option<TlsMode>,
    /// PEM file of extra CA certificates trusted for this registry.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// User name for basic auth or for the token service.
    pub username: Option<String>,
    /// Password written in the config (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable that holds the password.
    pub password_env: Option<String>,
    /// File whose content (trailing newline removed) is the password.
    pub password_file: Option<PathBuf>,
    /// OAuth2 refresh token (Docker's `identitytoken`), used instead of a password.
    pub identity_token: Option<Secret>,
    /// How to authenticate: `ecr`, `acr`, `gar` (a credential issued by the
    /// cloud's identity service), `basic` (the keys above, then the Docker
    /// and containers auth files and their helpers) or `anonymous`. Unset:
    /// chosen from the host (see [`crate::registry::identity::detect`]).
    pub auth: Option<AuthMode>,
    /// The password of `password_env` / `password_file` may be absent (an
    /// optional Kubernetes Secret): the registry is then used anonymously,
    /// with one warning naming the missing variable or file.
    pub credentials_optional: Option<bool>,
    /// Create a target repository that does not exist (ECR
    /// `CreateRepository`) when a push meets `NAME_UNKNOWN`; never deletes.
    pub create_repositories: Option<bool>,
    /// Tag mutability of created repositories: `MUTABLE` (default) or `IMMUTABLE`.
    pub repository_tag_mutability: Option<String>,
    /// Scan on push for created repositories.
    pub repository_scan_on_push: Option<bool>,
    /// Encryption of created repositories: `AES256` (default) or `KMS`.
    pub repository_encryption: Option<String>,
    /// KMS key of created repositories (with `repository_encryption = "KMS"`).
    pub repository_kms_key: Option<String>,
    /// Artifact Registry location of created repositories, when the host
    /// does not name it (`LOCATION-docker.pkg.dev` does).
    pub repository_location: Option<String>,
    /// Most requests in flight to this registry at once.
    pub max_concurrent_requests: Option<usize>,
    /// Most requests per second to this registry; 0 or unset: unlimited.
    pub requests_per_second: Option<f64>,
    /// Most blob bytes per second read from and streamed to this registry,
    /// all transfers together; 0 or unset: unlimited.
    pub max_bytes_per_second: Option<u64>,
    /// Upload blobs in chunks of this many bytes (PATCH); unset: one PUT per blob.
    pub chunk_size: Option<u64>,
    /// How blobs are sent first: `auto` (the registry's profile, as unset),
    /// `monolithic` (one PUT) or `chunked` (PATCH parts). Refusals still
    /// adapt the shape.
    pub upload_mode: Option<UploadModeSetting>,
    /// Largest request body the registry takes (bytes): a larger blob is
    /// sent in parts, and no part is larger.
    pub max_body_size: Option<u64>,
    /// Smallest part but the last of a chunked upload (bytes).
    pub min_chunk_size: Option<u64>,
    /// Largest part of a chunked upload (bytes, at most 64 MiB).
    pub max_chunk_size: Option<u64>,
    /// Total deadline of one manifest, tag-list, token or blob-header request (seconds).
    pub timeout_seconds: Option<f64>,
    /// A blob stream fails when no byte arrived for this long (seconds).
    pub blob_idle_timeout_seconds: Option<f64>,
    /// A blob stream fails when slower than this over a whole idle window (0: no floor).
    pub blob_min_bytes_per_second: Option<u64>,
    /// Overall deadline of one paginated listing (tags, catalog; seconds).
    pub listing_timeout_seconds: Option<f64>,
    /// Most tags one listing of this registry may return.
    pub max_tags: Option<usize>,
    /// Most manifests one image read from this registry may hold.
    pub max_manifests_per_image: Option<usize>,
    /// Most manifest bytes one image read from this registry may hold.
    pub max_manifest_bytes_per_image: Option<u64>,
    /// Manifest GETs (pulls) of the announced allowance kept in reserve:
    /// an image whose copy would spend into it is deferred. Unset: 10 for
    /// Docker Hub, 0 elsewhere (see [`super::ratelimit`]).
    pub pull_budget_floor: Option<u64>,
}

/// Slowest pacing accepted for `requests_per_second` (one request per 1000 s).
pub const MIN_REQUESTS_PER_SECOND: f64 = 0.001;
/// Fastest pacing accepted for `requests_per_second`.
pub const MAX_REQUESTS_PER_SECOND: f64 = 1_000_000.0;

impl RegistryConfig {
    /// How to reach the registry `host`: `tls`, else plain HTTP for
    /// loopback hosts (as Docker does) and verified HTTPS elsewhere.
    pub fn tls_mode(&self, host: &str) -> TlsMode {
        self.tls
            .unwrap_or(if super::reference::is_loopback_host(host) {
                TlsMode::PlainHttp
            } else {
                TlsMode::Verify
            })
    }

    /// `http` or `https` for the registry `host` (see [`Self::tls_mode`]).
    pub fn scheme(&self, host: &str) -> &'static str {
        match self.tls_mode(host) {
            TlsMode::PlainHttp => "http",
            _ => "https",
        }
    }

    /// Whether the table itself names credentials (a user name, a password
    /// source or an identity token).
    pub fn has_static_credentials(&self) -> bool {
        self.username.is_some()
            || self.password.is_some()
            || self.password_env.is_some()
            || self.password_file.is_some()
            || self.identity_token.is_some()
    }

    /// Check the numeric settings; `Err((key, message))` for the first bad one.
    pub fn check_numbers(&self) -> Result<(), (&'static str, String)> {
        self.upload_settings().check()?;
        if let Some(v) = self.requests_per_second
            && !(v == 0.0 || (MIN_REQUESTS_PER_SECOND..=MAX_REQUESTS_PER_SECOND).contains(&v))
        {
            return Err((
                "requests_per_second",
                format!(
                    "{v} is out of range: expected 0 (unlimited) or a number from \
                     {MIN_REQUESTS_PER_SECOND} to {MAX_REQUESTS_PER_SECOND}"
                ),
            ));
        }
        if let Some(v) = self.max_bytes_per_second {
            super::http::bandwidth::check_cap(v).map_err(|m| ("max_bytes_per_second", m))?;
        }
        for (key, v) in [
            ("timeout_seconds", self.timeout_seconds),
            ("blob_idle_timeout_seconds", self.blob_idle_timeout_seconds),
            ("listing_timeout_seconds", self.listing_timeout_seconds),
        ] {
            if let Some(v) = v {
                check_seconds(v).map_err(|m| (key, m))?;
            }
        }
        for (key, v) in [
            ("max_tags", self.max_tags.map(|v| v as u64)),
            (
                "max_manifests_per_image",
                self.max_manifests_per_image.map(|v| v as u64),
            ),
            (
                "max_manifest_bytes_per_image",
                self.max_manifest_bytes_per_image,
            ),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests.map(|v| v as u64),
            ),
        ] {
            if v == Some(0) {
                return Err((key, "0 is not allowed: expected at least 1".into()));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("host", &self.host)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("identity_token", &self.identity_token)
            .field("auth", &self.auth)
            .field("credentials_optional", &self.credentials_optional)
            .field("create_repositories", &self.create_repositories)
            .field("repository_tag_mutability", &self.repository_tag_mutability)
            .field("repository_scan_on_push", &self.repository_scan_on_push)
            .field("repository_encryption", &self.repository_encryption)
            .field("repository_kms_key", &self.repository_kms_key)
            .field("repository_location", &self.repository_location)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("requests_per_second", &self.requests_per_second)
            .field("max_bytes_per_second", &self.max_bytes_per_second)
            .field("chunk_size", &self.chunk_size)
            .field("upload_mode", &self.upload_mode)
            .field("max_body_size", &self.max_body_size)
            .field("min_chunk_size", &self.min_chunk_size)
            .field("max_chunk_size", &self.max_chunk_size)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("blob_idle_timeout_seconds", &self.blob_idle_timeout_seconds)
            .field("blob_min_bytes_per_second", &self.blob_min_bytes_per_second)
            .field("listing_timeout_seconds", &self.listing_timeout_seconds)
            .field("max_tags", &self.max_tags)
            .field("max_manifests_per_image", &self.max_manifests_per_image)
            .field(
                "max_manifest_bytes_per_image",
                &self.max_manifest_bytes_per_image,
            )
            .field("pull_budget_floor", &self.pull_budget_floor)
            .finish()
    }
}

/// The `upload_mode` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadModeSetting {
    /// The registry's profile decides (as when unset).
    Auto,
    Monolithic,
    Chunked,
}

/// The upload settings of one registry: overrides of its upload profile
/// (see [`crate::registry::profiles`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadSettings {
    pub mode: Option<UploadModeSetting>,
    pub chunk_size: Option<u64>,
    pub max_body_size: Option<u64>,
    pub min_chunk_size: Option<u64>,
    pub max_chunk_size: Option<u64>,
}

impl RegistryConfig {
    /// The upload settings of this table (`chunk_size = 0`: unset).
    pub fn upload_settings(&self) -> UploadSettings {
        UploadSettings {
            mode: self.upload_mode,
            chunk_size: self.chunk_size.filter(|c| *c > 0),
            max_body_size: self.max_body_size,
            min_chunk_size: self.min_chunk_size,
            max_chunk_size: self.max_chunk_size,
        }
    }
}

impl UploadSettings {
    /// `base` (the profile of the registry's family) with these settings
    /// applied. `upload_mode = "auto"` keeps the profile's mode even with a
    /// `chunk_size`; a `chunk_size` alone means chunked uploads.
    /// `max_chunk_size` caps the part size (a registry's minimum still wins).
    pub fn apply(&self, base: Profile) -> Profile {
        let mode = self.mode.map(|m| match m {
            UploadModeSetting::Auto => base.mode,
            UploadModeSetting::Monolithic => UploadMode::Monolithic,
            UploadModeSetting::Chunked => UploadMode::Chunked,
        });
        let mut p = base.with(&ProfileOverride {
            mode,
            max_body: self.max_body_size,
            min_part: self.min_chunk_size,
            chunk_size: self.chunk_size,
        });
        if let Some(max) = self.max_chunk_size {
            p.chunk_size = p.chunk_size.min(max);
        }
        p
    }

    /// `Err((key, message))` for the first setting out of range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("max_body_size", self.max_body_size),
            ("min_chunk_size", self.min_chunk_size),
            ("max_chunk_size", self.max_chunk_size),
        ] {
            if v == Some(0) {
                return Err((
                    key,
                    "0 is not allowed: expected a number of bytes, at least 1".into(),
                ));
            }
        }
        if let Some(max) = self.max_chunk_size
            && max > MAX_PART
        {
            return Err((
                "max_chunk_size",
                format!(
                    "{max} is above {MAX_PART} (64 MiB), the largest part regmirror holds in memory"
                ),
            ));
        }
        let min = self.min_chunk_size.unwrap_or(0);
        for (key, max) in [
            ("max_body_size", self.max_body_size),
            ("max_chunk_size", self.max_chunk_size),
        ] {
            if let Some(max) = max
                && min > max
            {
                return Err((
                    "min_chunk_size",
                    format!("{min} is above {key} = {max}: no part size fits both"),
                ));
            }
        }
        if self.mode == Some(UploadModeSetting::Monolithic)
            && let Some(c) = self.chunk_size
        {
            return Err((
                "chunk_size",
                format!(
                    "{c} is set with upload_mode = \"monolithic\": remove one of them (chunk_size \
                     sets the part size of chunked uploads)"
                ),
            ));
        }
        Ok(())
    }
}

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is sent to a registry.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Longest deadline accepted in settings.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A deadline setting in seconds, checked: at least 1 s, at most a day.
pub fn check_seconds(v: f64) -> std::result::Result<Duration, String> {
    if !(v.is_finite() && v >= 0.001) {
        return Err(format!(
            "{v} is not a usable number of seconds: expected a positive number"
        ));
    }
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| *d <= MAX_TIMEOUT)
        .ok_or_else(|| format!("{v} seconds is longer than the most accepted (86400, one day)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::profiles::{MIB, for_host};

    #[test]
    fn upload_settings_override_the_profile() {
        let generic = for_host("127.0.0.1:5000");
        let auto = UploadSettings {
            mode: Some(UploadModeSetting::Auto),
            chunk_size: Some(2 * MIB),
            ..UploadSettings::default()
        };
        let p = auto.apply(generic);
        assert_eq!((p.mode, p.chunk_size), (UploadMode::Monolithic, 2 * MIB));
        let capped = UploadSettings {
            mode: Some(UploadModeSetting::Chunked),
            max_chunk_size: Some(MIB),
            ..UploadSettings::default()
        };
        let p = capped.apply(generic);
        assert_eq!((p.mode, p.chunk_size), (UploadMode::Chunked, MIB));
        let acr = for_host("x.azurecr.io");
        let p = UploadSettings {
            mode: Some(UploadModeSetting::Monolithic),
            max_body_size: Some(4 * MIB),
            ..UploadSettings::default()
        }
        .apply(acr);
        assert_eq!(
            (p.mode, p.max_body),
            (UploadMode::Monolithic, Some(4 * MIB))
        );
    }

    #[test]
    fn bad_upload_settings_name_their_key() {
        let bad = [
            (
                UploadSettings {
                    max_body_size: Some(0),
                    ..UploadSettings::default()
                },
                "max_body_size",
            ),
            (
                UploadSettings {
                    max_chunk_size: Some(MAX_PART + 1),
                    ..UploadSettings::default()
                },
                "max_chunk_size",
            ),
            (
                UploadSettings {
                    min_chunk_size: Some(2 * MIB),
                    max_chunk_size: Some(MIB),
                    ..UploadSettings::default()
                },
                "min_chunk_size",
            ),
            (
                UploadSettings {
                    mode: Some(UploadModeSetting::Monolithic),
                    chunk_size: Some(MIB),
                    ..UploadSettings::default()
                },
                "chunk_size",
            ),
        ];
        for (settings, key) in bad {
            assert_eq!(settings.check().unwrap_err().0, key, "{settings:?}");
        }
        assert!(UploadSettings::default().check().is_ok());
    }
}
