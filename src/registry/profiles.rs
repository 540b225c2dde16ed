//! What a registry family is known to accept for blob uploads, as data.
//!
//! A profile is chosen from the registry's host name before the first
//! request (and for Harbor from its token challenge, `service` or `realm`,
//! since Harbor runs under any host name). It sets the upload mode and limits a
//! family documents, so a push starts right instead of learning from a
//! refusal; the adaptive upload plan still learns from refusals on top of it,
//! and every field can be overridden per `[[registry]]`. Each row cites the
//! source of its rule; a family with no documented upload rule gets the
//! generic row (monolithic, adapt on refusal).
//!
//! This module is a leaf: it imports nothing but std.

use std::fmt;

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;

/// The registry families regmirror recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    DockerHub,
    Acr,
    Ecr,
    EcrPublic,
    Gar,
    Gcr,
    Ghcr,
    Quay,
    Harbor,
    Generic,
}

impl Family {
    /// The family's name as shown by `regmirror check`.
    pub fn name(self) -> &'static str {
        match self {
            Family::DockerHub => "Docker Hub",
            Family::Acr => "Azure Container Registry",
            Family::Ecr => "Amazon ECR",
            Family::EcrPublic => "Amazon ECR Public",
            Family::Gar => "Google Artifact Registry",
            Family::Gcr => "Google Container Registry",
            Family::Ghcr => "GitHub Container Registry",
            Family::Quay => "Quay",
            Family::Harbor => "Harbor",
            Family::Generic => "generic",
        }
    }
}

/// How a blob's bytes are sent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadMode {
    /// One `PUT` carrying the whole blob (with its `Content-Length`).
    Monolithic,
    /// `PATCH` parts of a known length, then an empty `PUT`.
    Chunked,
}

/// The upload rules of one registry family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub family: Family,
    /// How blobs are sent until a refusal teaches otherwise.
    pub mode: UploadMode,
    /// Largest request body the registry takes (`None`: no known limit).
    pub max_body: Option<u64>,
    /// Smallest part but the last of a chunked upload (`None`: any size).
    pub min_part: Option<u64>,
    /// Part size of chunked uploads, kept within `min_part..=max_body`.
    pub chunk_size: u64,
}

/// Part size of chunked uploads where the family sets none: large enough to
/// meet ECR's 5 MiB minimum, small enough to pass ACR's 20 MB cap, and small
/// enough that a transfer broken near its end resends at most one part.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * MIB;

const GENERIC: Profile = Profile {
    family: Family::Generic,
    mode: UploadMode::Monolithic,
    max_body: None,
    min_part: None,
    chunk_size: DEFAULT_CHUNK_SIZE,
};

/// One row per family, as a function of the family. Sources in comments.
fn row(family: Family) -> Profile {
    match family {
        // ACR answers "413 Request Entity Too Large - AzureContainerRegistry"
        // to an upload body above about 20 MB and 400 to a chunked-transfer
        // PATCH (goharbor/harbor issue #23015, PR #23016): start chunked,
        // parts of a known length under 20 MB.
        Family::Acr => Profile {
            family,
            mode: UploadMode::Chunked,
            max_body: Some(16 * MIB),
            ..GENERIC
        },
        // ECR: "All layer parts except the last part should be at least 5MB"
        // (dotnet/sdk-container-builds #424, dotnet/sdk PR #33019). ECR Public
        // is served by the same upload service; the same minimum is assumed.
        Family::Ecr | Family::EcrPublic => Profile {
            family,
            min_part: Some(5 * MIB),
            ..GENERIC
        },
        // Docker Hub, Artifact Registry, Container Registry, GHCR, Quay,
        // Harbor: no documented body limit or part minimum. Artifact
        // Registry's 411 to a body-less POST without Content-Length
        // (oras-project/rust-oci-client PR #176) is met for every registry
        // (every body-less request says `Content-Length: 0`).
        _ => Profile { family, ..GENERIC },
    }
}

/// The family of a registry host (`host[:port]`, any case).
pub fn family_of(host: &str) -> Family {
    let host = host.to_ascii_lowercase();
    let name = strip_port(&host);
    let ends = |suffix: &str| name.ends_with(suffix) && name.len() > suffix.len();
    if matches!(
        name,
        "docker.io" | "registry-1.docker.io" | "index.docker.io" | "registry.hub.docker.com"
    ) {
        Family::DockerHub
    } else if ends(".azurecr.io") || ends(".azurecr.cn") || ends(".azurecr.us") {
        Family::Acr
    } else if name == "public.ecr.aws" {
        Family::EcrPublic
    } else if is_ecr_private(name) {
        Family::Ecr
    } else if ends("-docker.pkg.dev") {
        Family::Gar
    } else if name == "gcr.io" || ends(".gcr.io") {
        Family::Gcr
    } else if name == "ghcr.io" {
        Family::Ghcr
    } else if name == "quay.io" {
        Family::Quay
    } else {
        Family::Generic
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// `<account>.dkr.ecr.<region>.amazonaws.com` (also `.amazonaws.com.cn`
/// and the FIPS endpoints `dkr.ecr-fips`).
fn is_ecr_private(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let Some(dkr) = labels.iter().position(|l| *l == "dkr") else {
        return false;
    };
    let rest = &labels[dkr + 1..];
    dkr >= 1
        && rest.len() >= 3
        && (rest[0] == "ecr" || rest[0] == "ecr-fips")
        && rest[2] == "amazonaws"
}

/// The profile of a registry host.
pub fn for_host(host: &str) -> Profile {
    row(family_of(host))
}

/// The profile of a host whose token challenge named `service`: Harbor
/// announces itself as `service="harbor-registry"` (Harbor's token service),
/// under any host name. Other services keep the host's profile.
pub fn for_challenge(host: &str, service: Option<&str>) -> Profile {
    match service {
        Some(s) if s.eq_ignore_ascii_case("harbor-registry") => row(Family::Harbor),
        _ => for_host(host),
    }
}

/// The profile of a host from its token challenge: Harbor's when the
/// challenge names Harbor's token service (`service="harbor-registry"`) or
/// Harbor's token endpoint (a `realm` whose path is `/service/token`, as in
/// `Bearer realm="https://harbor.example/service/token",service="harbor-registry"`,
/// the challenge Harbor's `GET /v2/` answers with); else the host's.
pub fn for_token_service(host: &str, realm: Option<&str>, service: Option<&str>) -> Profile {
    let harbor_realm = realm
        .map(|r| r.split(['?', '#']).next().unwrap_or(r))
        .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .is_some_and(|path| path.trim_end_matches('/') == "/service/token");
    if harbor_realm {
        return row(Family::Harbor);
    }
    for_challenge(host, service)
}

/// Per-registry overrides of a profile (every field optional).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileOverride {
    pub mode: Option<UploadMode>,
    pub max_body: Option<u64>,
    pub min_part: Option<u64>,
    pub chunk_size: Option<u64>,
}

impl Profile {
    /// This profile with the set fields of `o` replacing its own. A
    /// `chunk_size` override alone means chunked uploads (as the
    /// `chunk_size` setting always has).
    pub fn with(self, o: &ProfileOverride) -> Profile {
        let mode = o.mode.unwrap_or(if o.chunk_size.is_some() {
            UploadMode::Chunked
        } else {
            self.mode
        });
        Profile {
            family: self.family,
            mode,
            max_body: o.max_body.or(self.max_body),
            min_part: o.min_part.or(self.min_part),
            chunk_size: o.chunk_size.unwrap_or(self.chunk_size),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            UploadMode::Monolithic => "monolithic uploads",
            UploadMode::Chunked => "chunked uploads",
        };
        write!(f, "{} ({mode}", self.family.name())?;
        if let Some(max) = self.max_body {
            write!(f, ", bodies up to {}", bytes(max))?;
        }
        if let Some(min) = self.min_part {
            write!(f, ", parts of at least {}", bytes(min))?;
        }
        write!(f, ", {} parts when chunked)", bytes(self.chunk_size))
    }
}

fn bytes(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_hosts() {
        let cases = [
            ("docker.io", Family::DockerHub),
            ("registry-1.docker.io", Family::DockerHub),
            ("myreg.azurecr.io", Family::Acr),
            ("MyReg.AzureCR.io:443", Family::Acr),
            ("azurecr.io", Family::Generic),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", Family::Ecr),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Family::Ecr,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Family::Ecr,
            ),
            ("dkr.ecr.eu-west-1.amazonaws.com", Family::Generic),
            ("public.ecr.aws", Family::EcrPublic),
            ("europe-west1-docker.pkg.dev", Family::Gar),
            ("docker.pkg.dev", Family::Generic),
            ("gcr.io", Family::Gcr),
            ("eu.gcr.io", Family::Gcr),
            ("ghcr.io", Family::Ghcr),
            ("quay.io", Family::Quay),
            ("127.0.0.1:5000", Family::Generic),
            ("[::1]:5000", Family::Generic),
            ("registry.example.com", Family::Generic),
            ("evil-azurecr.io.example.com", Family::Generic),
        ];
        for (host, want) in cases {
            assert_eq!(family_of(host), want, "{host}");
        }
    }

    #[test]
    fn rows_carry_the_documented_rules() {
        let acr = for_host("x.azurecr.io");
        assert_eq!(acr.mode, UploadMode::Chunked);
        assert!(acr.max_body.unwrap() < 20 * 1000 * 1000);
        assert!(acr.chunk_size <= acr.max_body.unwrap());
        let ecr = for_host("1.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(ecr.mode, UploadMode::Monolithic);
        assert_eq!(ecr.min_part, Some(5 * MIB));
        assert!(ecr.chunk_size >= 5 * MIB);
        assert_eq!(for_host("public.ecr.aws").min_part, Some(5 * MIB));
        let generic = for_host("127.0.0.1:5000");
        assert_eq!(generic.mode, UploadMode::Monolithic);
        assert_eq!((generic.max_body, generic.min_part), (None, None));
    }

    #[test]
    fn harbor_is_recognised_by_its_token_service() {
        let p = for_challenge("registry.corp.example", Some("harbor-registry"));
        assert_eq!(p.family, Family::Harbor);
        let p = for_challenge("x.azurecr.io", Some("x.azurecr.io"));
        assert_eq!(p.family, Family::Acr);
        assert_eq!(for_challenge("h", None).family, Family::Generic);
    }

    #[test]
    fn harbor_is_recognised_by_its_token_endpoint() {
        let realm = Some("https://harbor.corp.example/service/token");
        let p = for_token_service("harbor.corp.example", realm, None);
        assert_eq!(p.family, Family::Harbor);
        let p = for_token_service("h", None, Some("harbor-registry"));
        assert_eq!(p.family, Family::Harbor);
        let docker = Some("https://auth.docker.io/token");
        let p = for_token_service("docker.io", docker, Some("registry.docker.io"));
        assert_eq!(p.family, Family::DockerHub);
        let p = for_token_service("h", Some("https://h/v2/service/token"), None);
        assert_eq!(p.family, Family::Generic);
    }

    #[test]
    fn overrides_replace_each_field() {
        let base = for_host("x.azurecr.io");
        assert_eq!(base.with(&ProfileOverride::default()), base);
        let p = for_host("127.0.0.1").with(&ProfileOverride {
            chunk_size: Some(2 * MIB),
            ..Default::default()
        });
        assert_eq!((p.mode, p.chunk_size), (UploadMode::Chunked, 2 * MIB));
        let p = base.with(&ProfileOverride {
            mode: Some(UploadMode::Monolithic),
            max_body: Some(MIB),
            min_part: Some(1),
            chunk_size: None,
        });
        assert_eq!(p.mode, UploadMode::Monolithic);
        assert_eq!((p.max_body, p.min_part), (Some(MIB), Some(1)));
    }

    #[test]
    fn display_names_family_and_limits() {
        let s = for_host("x.azurecr.io").to_string();
        assert_eq!(
            s,
            "Azure Container Registry (chunked uploads, bodies up to 16 MiB, 8 MiB parts when chunked)"
        );
        let s = for_host("1.dkr.ecr.us-east-1.amazonaws.com").to_string();
        assert!(s.contains("parts of at least 5 MiB"), "{s}");
    }
}
