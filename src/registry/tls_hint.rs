//! What to do about a failed TLS connection, chosen from what the TLS
//! layer (rustls) or the registry said: each cause names the command-line
//! flag and the `[[registry]]` key that fix it.

/// Go's `net/http` answer (HTTP 400) to plain HTTP on an HTTPS port; the
/// Distribution registry and most registries written in Go send it.
pub const HTTP_TO_HTTPS_ANSWER: &str = "Client sent an HTTP request to an HTTPS server";

/// The detail of the error for a registry that answered plain HTTP with
/// [`HTTP_TO_HTTPS_ANSWER`]; [`hint`] recognises it.
pub fn http_to_https_detail(registry: &str) -> String {
    format!(
        "registry {registry} answered HTTP 400 \"{HTTP_TO_HTTPS_ANSWER}.\": it speaks HTTPS and \
         regmirror spoke plain HTTP to it (the default for loopback hosts)"
    )
}

/// The remedy for a TLS failure described by `detail`, about `target`
/// (`HOST/...`).
pub fn hint(target: &str, detail: &str) -> String {
    let host = target.split('/').next().unwrap_or(target);
    let d = detail.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| d.contains(w));
    let ca = format!(
        "pass --ca-file {host}=PATH (the CA's PEM file) or set ca_file = \"PATH\" in the \
         [[registry]] table of host {host:?}"
    );
    if d.contains(&HTTP_TO_HTTPS_ANSWER.to_ascii_lowercase()) {
        format!(
            "speak HTTPS to it: pass --https {host} (and, for a private CA, {ca}); in a config, \
             set tls = \"verify\" in its [[registry]] table"
        )
    } else if has(&[
        "unknownissuer",
        "unknown issuer",
        "self-signed",
        "self signed",
    ]) {
        format!(
            "its certificate is signed by a CA regmirror does not trust: {ca} \
             (--skip-verify {host} / tls = \"skip-verify\" turns verification off, for tests only)"
        )
    } else if has(&["notvalidforname", "not valid for name"]) {
        format!(
            "its certificate does not name {host}: use a host name the certificate holds, or \
             have the registry's certificate reissued for {host}"
        )
    } else if has(&["expired", "not valid yet", "notvalidyet"]) {
        "its certificate has expired (or is not valid yet): have it renewed, and check this \
         machine's clock"
            .to_string()
    } else if has(&[
        "wrong version number",
        "invalidcontenttype",
        "invalid content type",
        "corrupt message",
    ]) {
        format!(
            "{host} does not seem to speak TLS on this port (a plain-HTTP registry answers \
             like this): pass --plain-http {host} or set tls = \"plain-http\" in its \
             [[registry]] table"
        )
    } else {
        format!(
            "check the registry's tls setting and ca_file (a private CA must be trusted through ca_file: {ca})"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_names_its_remedy() {
        let t = "127.0.0.1:5000/team/app:v1";
        let h = hint(t, &http_to_https_detail("127.0.0.1:5000"));
        assert!(h.contains("--https 127.0.0.1:5000"), "{h}");
        assert!(h.contains("--ca-file 127.0.0.1:5000=PATH"), "{h}");
        let h = hint(t, "cannot connect: invalid peer certificate: UnknownIssuer");
        assert!(h.contains("--ca-file") && h.contains("ca_file"), "{h}");
        let h = hint(
            t,
            "invalid peer certificate: NotValidForNameContext { expected: .. }",
        );
        assert!(h.contains("does not name 127.0.0.1:5000"), "{h}");
        let h = hint(
            t,
            "invalid peer certificate: certificate expired: verification time 2 (UNIX), but \
             certificate is not valid after 1 (1 seconds ago)",
        );
        assert!(h.contains("expired"), "{h}");
        let h = hint(t, "received corrupt message of type InvalidContentType");
        assert!(h.contains("--plain-http 127.0.0.1:5000"), "{h}");
        assert!(hint(t, "something else").contains("ca_file"));
    }
}
