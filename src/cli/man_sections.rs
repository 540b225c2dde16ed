//! The ENVIRONMENT, FILES and EXIT STATUS sections of `regmirror man`.
//! EXIT STATUS is read from the documentation of the [`super::Exit`] enum
//! itself (its source is compiled in), so the page follows the enum.

/// Environment variables the binary reads, and what for.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "REGMIRROR_CONFIG",
        "Config file of sync, check and serve when --config is not given (mirrors given on \
         sync's command line win over it).",
    ),
    (
        "RUST_LOG",
        "Log filter when --log-level is not given (a level, or TARGET=LEVEL pairs).",
    ),
    (
        "DOCKER_CONFIG",
        "Directory of the Docker config.json read for credentials (default ~/.docker).",
    ),
    (
        "REGISTRY_AUTH_FILE",
        "The containers auth.json read for credentials, instead of ${XDG_RUNTIME_DIR}/containers/auth.json and ~/.config/containers/auth.json.",
    ),
    (
        "XDG_RUNTIME_DIR",
        "Where the containers auth.json of podman, buildah and skopeo is looked for first.",
    ),
    (
        "HOME",
        "Where ~/.docker/config.json, ~/.config/containers/auth.json and the gcloud config are found.",
    ),
    (
        "HTTPS_PROXY, HTTP_PROXY, NO_PROXY",
        "Proxy for registry requests, and the hosts reached directly.",
    ),
    (
        "COLUMNS",
        "Width of the bars sync --progress bar draws when stderr is not a terminal.",
    ),
    (
        "TMPDIR",
        "Where an oci-archive: is extracted (room for the archive is needed there).",
    ),
    (
        "REGMIRROR_ARCHIVE_BUDGET",
        "Most bytes an oci-archive: may extract to (default 64 GiB).",
    ),
    (
        "REGMIRROR_SHARD_COUNT, REGMIRROR_SHARD_INDEX",
        "Shard count and this replica's shard index (sync and serve), after --shard-count and \
         --shard-index, before the config's [shard] table.",
    ),
    (
        "REGMIRROR_POD_INDEX, POD_NAME, HOSTNAME, JOB_COMPLETION_INDEX",
        "This replica's shard index when nothing above sets it: a StatefulSet's pod index, the \
         number after the last '-' of the pod or host name, an Indexed Job's index.",
    ),
    (
        "AWS_REGION, AWS_DEFAULT_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS identity of registries with auth = \"ecr\".",
    ),
    (
        "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST, IDENTITY_ENDPOINT, IDENTITY_HEADER, AZURE_POD_IDENTITY_AUTHORITY_HOST",
        "Azure identity of registries with auth = \"acr\".",
    ),
    (
        "GOOGLE_APPLICATION_CREDENTIALS, CLOUDSDK_CONFIG, GCE_METADATA_HOST, GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES",
        "Google identity of registries with auth = \"gar\"; an external_account file's executable runs only with GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1, and its AWS source reads the AWS_* keys and region.",
    ),
    (
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY",
        "Artifact Registry API endpoint used by create_repositories (gcloud's own variable).",
    ),
    (
        "REGMIRROR_NO_STATE",
        "Set to true: keep no run-state store, as --no-state.",
    ),
    (
        "XDG_CACHE_HOME",
        "Where import keeps its run-state store (XDG_CACHE_HOME/regmirror, else ~/.cache/regmirror).",
    ),
    (
        "any password_env variable",
        "A registry's password or token, named by --password-env HOST=VAR or a [[registry]] password_env.",
    ),
];

/// Files the binary reads.
const FILES: &[(&str, &str)] = &[
    (
        "the --config FILE",
        "Mirror config (TOML): [[mirror]], [defaults], [server], [shard] and [[registry]] tables; config.example.toml documents it.",
    ),
    (
        "$DOCKER_CONFIG/config.json, ~/.docker/config.json",
        "Docker credentials (auths, credHelpers, credsStore), unless --docker-config FILE or the config's docker_config names another.",
    ),
    (
        "$REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/containers/auth.json",
        "Credentials of podman, buildah and skopeo logins, read after the Docker config.",
    ),
    (
        "state_dir/state.redb (default .regmirror-state/ beside the config; import: ~/.cache/regmirror/)",
        "The run-state store: blob locations for mounts across runs, immutable tags mirrored, first sightings for min_age. A cache: deleting it costs requests, never correctness (--no-state keeps none).",
    ),
    (
        "$TMPDIR/regmirror-archive-<pid>-*",
        "Extracted oci-archive: files, removed at exit (and by the next run when a process died).",
    ),
];

/// The three sections, in roff.
pub fn render() -> String {
    let mut out = String::new();
    section(
        &mut out,
        "ENVIRONMENT",
        ENVIRONMENT
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    section(
        &mut out,
        "FILES",
        FILES.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    );
    out.push_str(
        ".PP\nThe registries hold every image; the run-state store only saves requests.\n",
    );
    section(
        &mut out,
        "EXIT STATUS",
        exit_codes(include_str!("mod.rs")).into_iter(),
    );
    out
}

fn section(out: &mut String, title: &str, items: impl Iterator<Item = (String, String)>) {
    out.push_str(&format!(".SH \"{title}\"\n"));
    for (tag, text) in items {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(&tag), roff(&text)));
    }
}

/// Escape text for roff: backslashes, hyphens, and a leading dot or quote.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with(['.', '\'']) {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `(code, meaning)` of each variant of `pub enum Exit` in `source`: its
/// `= N` and its doc comment.
fn exit_codes(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(start) = source.find("pub enum Exit {") else {
        return out;
    };
    let mut doc: Vec<&str> = Vec::new();
    for line in source[start..].lines().skip(1) {
        let line = line.trim();
        if line.starts_with('}') {
            break;
        }
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim());
        } else if let Some((_, code)) = line.split_once('=') {
            let code = code.trim().trim_end_matches(',').trim();
            out.push((code.to_string(), doc.join(" ")));
            doc.clear();
        } else if !line.starts_with("#[") {
            doc.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_enum() {
        let codes = exit_codes(include_str!("mod.rs"));
        let numbers: Vec<&str> = codes.iter().map(|(c, _)| c.as_str()).collect();
        for exit in [
            super::super::Exit::Ok,
            super::super::Exit::Failed,
            super::super::Exit::Usage,
            super::super::Exit::Partial,
            super::super::Exit::Conflict,
            super::super::Exit::Deferred,
            super::super::Exit::Interrupted,
        ] {
            let n = (exit as u8).to_string();
            assert!(
                numbers.contains(&n.as_str()),
                "{exit:?} ({n}) missing: {codes:?}"
            );
        }
        assert!(codes.iter().all(|(_, d)| !d.is_empty()), "{codes:?}");
    }

    #[test]
    fn roff_escapes_hyphens_and_leading_dots() {
        assert_eq!(roff("--yes"), "\\-\\-yes");
        assert_eq!(roff(".x"), "\\&.x");
    }
}
