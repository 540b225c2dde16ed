//! Value parsers for flags: each rejects a bad value with a message saying
//! what was expected, so clap exits 2 before anything is contacted.

/// Level names a log filter directive may use.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// `--log-level`: comma-separated directives, each a level name or
/// `TARGET=LEVEL` (`regmirror=debug`, `regmirror::registry=trace`).
pub fn log_filter(value: &str) -> Result<String, String> {
    let expected = "expected a level (error, warn, info, debug, trace, off) or TARGET=LEVEL \
                    pairs, comma-separated, such as `debug` or `regmirror=debug,info`";
    if value.trim().is_empty() {
        return Err(format!("empty filter: {expected}"));
    }
    for directive in value.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(format!("{directive:?} names no target: {expected}")),
            None => directive,
        };
        if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(format!("{level:?} is not a level: {expected}"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(value).map_err(|e| format!("{e}: {expected}"))?;
    Ok(value.to_string())
}

/// A registry host as written in image references: `ghcr.io`,
/// `registry.example.com:5000`, `127.0.0.1:5000`, `[::1]:5000`; no scheme,
/// no path, a port in 1..=65535.
pub fn host(value: &str) -> Result<String, String> {
    let v = value.trim();
    let example = "expected a registry host as written in image references, such as \
                   `registry.example.com`, `localhost:5000` or `127.0.0.1:5000`";
    if v.is_empty() {
        return Err(format!("empty host: {example}"));
    }
    if let Some((scheme, rest)) = v.split_once("://") {
        return Err(format!(
            "{v:?} has a URL scheme ({scheme}://): give the host alone, `{}`; {example}",
            rest.trim_end_matches('/')
        ));
    }
    if v.contains('/') {
        return Err(format!("{v:?} has a path: {example}"));
    }
    let (name, port) = if let Some(rest) = v.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("{v:?}: unclosed '[': {example}"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v:?}: {addr:?} is not an IPv6 address: {example}"));
        }
        match after {
            "" => (addr, None),
            a => match a.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return Err(format!("{v:?}: {example}")),
            },
        }
    } else {
        match v.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (v, None),
        }
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !v.starts_with('[') && !name.split('.').all(label_ok) {
        return Err(format!("{v:?} is not a host name: {example}"));
    }
    if let Some(p) = port
        && !p.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
    {
        return Err(format!(
            "{v:?}: port {p:?} is out of range: expected 1 to 65535"
        ));
    }
    Ok(v.to_string())
}

/// `HOST=VALUE` with a valid host and a non-empty value.
pub fn host_value(value: &str) -> Result<(String, String), String> {
    let Some((h, v)) = value.split_once('=') else {
        return Err(format!(
            "{value:?}: expected HOST=VALUE, such as ghcr.io=GHCR_TOKEN"
        ));
    };
    let h = host(h)?;
    if v.is_empty() {
        return Err(format!("{value:?}: the value after '=' is empty"));
    }
    Ok((h, v.to_string()))
}

/// Report a command line clap refused, and the exit code: help and
/// version go to stdout (exit 0); errors go to stderr (exit 2), as a JSON
/// log line when `--log-format json` was asked for.
pub fn clap_error(e: clap::Error) -> std::process::ExitCode {
    if e.exit_code() == 0 {
        let _ = e.print();
        return std::process::ExitCode::SUCCESS;
    }
    if wants_json_logs(std::env::args()) {
        super::init_tracing(&super::GlobalArgs {
            log_format: super::LogFormat::Json,
            log_level: None,
            debug: false,
        });
        let text = e.render().to_string();
        let first = text.split("\n\n").next().unwrap_or_default();
        super::out::error(first.trim().trim_start_matches("error: "));
    } else {
        let _ = e.print();
    }
    std::process::ExitCode::from(super::Exit::Usage as u8)
}

/// True when the raw arguments ask for `--log-format json`.
fn wants_json_logs(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().enumerate().any(|(i, a)| {
        a == "--log-format=json"
            || (a == "--log-format" && args.get(i + 1).is_some_and(|v| v == "json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters() {
        for ok in [
            "info",
            "debug",
            "regmirror=trace",
            "regmirror=debug,warn",
            "OFF",
        ] {
            assert!(log_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["verbose", "", "=debug", "regmirror=loud", "info,chatty"] {
            assert!(log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "ghcr.io",
            "localhost",
            "127.0.0.1:5201",
            "[::1]:5000",
            "[::1]",
            "registry-1.docker.io",
        ] {
            assert_eq!(host(ok).unwrap(), ok);
        }
        for bad in [
            "http://127.0.0.1:5201",
            "127.0.0.1:5201/x",
            "127.0.0.1:99999",
            "host:0",
            "bad host",
            "",
            "[::1",
            "[nope]:1",
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
        assert_eq!(
            host_value("ghcr.io=VAR").unwrap(),
            ("ghcr.io".to_string(), "VAR".to_string())
        );
        assert!(host_value("ghcr.io").is_err());
        assert!(host_value("ghcr.io=").is_err());
        assert!(host_value("http://x=y").is_err());
    }
}
