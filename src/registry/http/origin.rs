//! Where a request may go, and with what. Every URL regmirror requests is
//! either one it built itself or one a registry named (`Location` of an
//! upload or a redirect, `Link` of a tag page); all of them pass here.
//!
//! - A URL on the registry's own origin (scheme, host, port) must stay under
//!   `/v2/<repository>/` of the repository it is about, with no encoded
//!   `/`, `\` or `.` that a server could decode into another path; it gets
//!   the registry's credentials.
//! - A URL on another origin (a storage backend or CDN serving a blob) is
//!   fetched without any credentials; a 401 from it is an error.
//! - An `https` registry never sends anything to an `http` URL.

use url::Url;

/// Who a URL belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The registry itself: credentials may be sent.
    Registry,
    /// Another origin: no credentials.
    Foreign,
}

/// `/v2/<repository>/`.
pub(crate) fn repo_prefix(repo: &str) -> String {
    format!("/v2/{repo}/")
}

/// Classify `url`, a request meant for `repo` on the registry at `base`;
/// `Err` says why it must not be requested at all.
pub(crate) fn classify(base: &Url, repo: &str, url: &Url) -> Result<Destination, String> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("it uses the {other:?} scheme")),
    }
    if base.scheme() == "https" && url.scheme() == "http" {
        return Err(
            "it downgrades from https to plain http, which would expose credentials and content"
                .to_string(),
        );
    }
    if url.origin() != base.origin() {
        return Ok(Destination::Foreign);
    }
    let path = url.path();
    if repo.is_empty() {
        // A request about the registry itself: only the API root and the
        // catalog.
        return if path == "/v2/" || path == "/v2/_catalog" {
            Ok(Destination::Registry)
        } else {
            Err(format!(
                "it is neither the API root /v2/ nor /v2/_catalog (path {})",
                crate::registry::escape::shown(path)
            ))
        };
    }
    let prefix = repo_prefix(repo);
    let lower = path.to_ascii_lowercase();
    if !path.starts_with(&prefix)
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%2e")
        || path.contains('\\')
    {
        return Err(format!(
            "it leaves {prefix} of the registry (path {})",
            crate::registry::escape::shown(path)
        ));
    }
    Ok(Destination::Registry)
}

/// `base` + `/v2/<repo components>/<segments>`, each segment percent-encoded
/// (a `/`, `?`, `#` or `%` inside a segment cannot change the path). With
/// an empty `repo` and no segments: the API root `/v2/`.
pub(crate) fn registry_url(base: &Url, repo: &str, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().push("v2");
        if repo.is_empty() && segments.is_empty() {
            path.push("");
        }
        if !repo.is_empty() {
            path.extend(repo.split('/'));
        }
        path.extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn registry_urls_encode_each_segment() {
        let base = u("https://r.example/");
        assert_eq!(
            registry_url(&base, "ns/app", &["manifests", "v1"]).as_str(),
            "https://r.example/v2/ns/app/manifests/v1"
        );
        assert_eq!(
            registry_url(&base, "app", &["blobs", "uploads", ""]).as_str(),
            "https://r.example/v2/app/blobs/uploads/"
        );
        assert_eq!(
            registry_url(&base, "", &[]).as_str(),
            "https://r.example/v2/"
        );
        assert_eq!(
            classify(&base, "", &registry_url(&base, "", &[])),
            Ok(Destination::Registry)
        );
        assert!(classify(&base, "", &u("https://r.example/v2/app/tags/list")).is_err());
        let evil = registry_url(
            &base,
            "app",
            &["manifests", "../../victim/manifests/latest?x#y"],
        );
        assert!(evil.path().starts_with("/v2/app/manifests/"), "{evil}");
        assert!(
            evil.query().is_none() && evil.fragment().is_none(),
            "{evil}"
        );
        assert!(
            classify(&base, "app", &evil).is_err(),
            "an encoded '/' is refused"
        );
    }

    #[test]
    fn urls_are_classified_by_origin_and_path() {
        let base = u("https://r.example/");
        let ok = u("https://r.example/v2/app/blobs/uploads/123?state=x");
        assert_eq!(classify(&base, "app", &ok), Ok(Destination::Registry));
        assert_eq!(
            classify(&base, "app", &u("https://r.example:443/v2/app/tags/list")),
            Ok(Destination::Registry)
        );
        assert!(
            classify(
                &base,
                "app",
                &u("https://r.example/v2/victim/blobs/uploads/1")
            )
            .is_err()
        );
        assert!(classify(&base, "app", &u("https://r.example/v2/app/../victim/x")).is_err());
        assert!(classify(&base, "app", &u("https://r.example/v2/app%2Fx/tags/list")).is_err());
        assert!(classify(&base, "app", &u("https://r.example/v2/appx/tags/list")).is_err());
        assert_eq!(
            classify(&base, "app", &u("https://cdn.example/blob?sig=1")),
            Ok(Destination::Foreign)
        );
        assert_eq!(
            classify(&base, "app", &u("https://r.example:8443/v2/app/x")),
            Ok(Destination::Foreign)
        );
        let e = classify(&base, "app", &u("http://r.example/v2/app/x")).unwrap_err();
        assert!(e.contains("downgrades"), "{e}");
        assert!(classify(&base, "app", &u("http://cdn.example/x")).is_err());
        assert!(classify(&base, "app", &u("file:///etc/passwd")).is_err());
        let plain = u("http://127.0.0.1:5000/");
        assert_eq!(
            classify(&plain, "app", &u("http://127.0.0.1:5001/v2/app/x")),
            Ok(Destination::Foreign)
        );
    }
}
