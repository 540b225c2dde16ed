//! `external_account` credentials whose subject token a program prints
//! (`credential_source.executable`: `command`, `timeout_millis`,
//! `output_file`), run the way Google's auth libraries document
//! "executable-sourced credentials":
//!
//! - only when `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1` is set;
//! - the command split at white space and run without a shell, with
//!   `GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE`, `GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE`,
//!   `GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE=0`, `GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE`
//!   (with `output_file`) and `GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL`
//!   (when the file impersonates a service account) added to the
//!   environment, standard input closed;
//! - killed after `timeout_millis` (5,000 to 120,000; default 30,000);
//! - its answer, JSON on standard output (or in `output_file` when it
//!   prints nothing): `version` 1, `success`, `token_type`
//!   (`urn:ietf:params:oauth:token-type:id_token` or `…:jwt` with `id_token`,
//!   `…:saml2` with `saml_response`) and `expiration_time` (Unix seconds),
//!   or `success: false` with `code` and `message`;
//! - a successful answer in `output_file` that states an `expiration_time`
//!   still ahead is used without running the program.
//!
//! The program runs as a child process awaited on the async runtime, so a
//! slow one holds no executor thread. Errors name the program and what it
//! said (its `code` and `message`, or the end of its standard error), never
//! its token.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Ctx;
use crate::registry::error::{Error, Op, Result};

/// The variable that must be `1` for an executable to be run.
pub const ALLOW_VAR: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
/// Google's bounds and default of `timeout_millis`.
const TIMEOUT_MS: (u64, u64, u64) = (5_000, 120_000, 30_000);
/// The newest answer `version` understood.
const SUPPORTED_VERSION: u64 = 1;
/// Longest part of a program's words kept in an error.
const MAX_WORDS: usize = 300;

/// What the subject token is for, told to the program.
pub(super) struct Exchange<'a> {
    /// The file's `audience` (the workload identity provider).
    pub audience: &'a str,
    /// The file's `subject_token_type`.
    pub token_type: &'a str,
    /// The service account the file impersonates, if any.
    pub impersonated: Option<&'a str>,
}

/// A checked `credential_source.executable`.
struct Config {
    argv: Vec<String>,
    timeout: Duration,
    output_file: Option<String>,
}

/// Why an answer gives no token: `Malformed` answers are errors even in
/// the cache; a `Refused` cached answer (expired, failed) means "run again".
enum Unusable {
    Malformed(String),
    Refused(String),
}

/// The subject token the program of `exe` gives for `exchange`.
pub(super) async fn subject_token(
    ctx: &Ctx<'_>,
    exe: &Value,
    exchange: &Exchange<'_>,
) -> Result<String> {
    let fail = |detail: String| Error::Auth {
        op: Op::Token,
        target: ctx.target.to_string(),
        detail,
    };
    if ctx.env.get(ALLOW_VAR).as_deref() != Some("1") {
        return Err(fail(format!(
            "credential_source.executable runs a program for the subject token, which is \
             done only when {ALLOW_VAR}=1 (as in Google's own libraries): set it in \
             regmirror's environment to allow this program"
        )));
    }
    let config = config(exe).map_err(&fail)?;
    if let Some(path) = &config.output_file
        && let Some(token) = cached(path).map_err(&fail)?
    {
        return Ok(token);
    }
    let program = &config.argv[0];
    let stdout = run(&config, exchange).await.map_err(&fail)?;
    let (text, from) = match (stdout.trim().is_empty(), &config.output_file) {
        (true, Some(path)) => (
            std::fs::read_to_string(path).map_err(|e| {
                fail(format!(
                    "the executable {program} printed nothing and its output_file {path} \
                     cannot be read: {e}"
                ))
            })?,
            format!("the output_file {path} of the executable {program}"),
        ),
        _ => (stdout, format!("the answer of the executable {program}")),
    };
    let answer: Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("{from} is not JSON ({e})")))?;
    match parse(&answer) {
        Ok((token, _)) => Ok(token),
        Err(Unusable::Malformed(why) | Unusable::Refused(why)) => {
            Err(fail(format!("{from} {why}")))
        }
    }
}

/// The settings of `credential_source.executable`, checked.
fn config(exe: &Value) -> std::result::Result<Config, String> {
    let argv: Vec<String> = exe
        .get("command")
        .and_then(Value::as_str)
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if argv.is_empty() {
        return Err("credential_source.executable has no \"command\"".into());
    }
    let (min, max, default) = TIMEOUT_MS;
    let ms = match exe.get("timeout_millis") {
        None | Some(Value::Null) => default,
        Some(v) => v
            .as_u64()
            .filter(|ms| (min..=max).contains(ms))
            .ok_or_else(|| {
                format!(
                    "credential_source.executable.timeout_millis is {v}: Google's libraries \
                     accept {min} to {max} milliseconds"
                )
            })?,
    };
    let output_file = exe
        .get("output_file")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
        .map(str::to_string);
    Ok(Config {
        argv,
        timeout: Duration::from_millis(ms),
        output_file,
    })
}

/// The token of a successful, unexpired answer in `path`, if any.
fn cached(path: &str) -> std::result::Result<Option<String>, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Ok(answer) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    match parse(&answer) {
        Ok((token, Some(_))) => Ok(Some(token)),
        Ok((_, None)) | Err(Unusable::Refused(_)) => Ok(None),
        Err(Unusable::Malformed(why)) => Err(format!(
            "the executable's output_file {path} {why}; remove it or fix the program"
        )),
    }
}

/// The token of an answer and its `expiration_time`.
fn parse(answer: &Value) -> std::result::Result<(String, Option<u64>), Unusable> {
    let malformed = |why: &str| Unusable::Malformed(why.to_string());
    let version = answer
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed("has no \"version\""))?;
    if version > SUPPORTED_VERSION {
        return Err(Unusable::Refused(format!(
            "has version {version}; supported: {SUPPORTED_VERSION}"
        )));
    }
    let success = answer
        .get("success")
        .and_then(Value::as_bool)
        .ok_or_else(|| malformed("has no \"success\""))?;
    if !success {
        let word = |k: &str| answer.get(k).and_then(Value::as_str).map(cut);
        return Err(match (word("code"), word("message")) {
            (Some(code), Some(message)) => Unusable::Refused(format!(
                "reports a failure: code {code}, message: {message}"
            )),
            _ => malformed("reports a failure without \"code\" and \"message\""),
        });
    }
    let expiry = answer.get("expiration_time").and_then(Value::as_u64);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if expiry.is_some_and(|e| e < now) {
        return Err(Unusable::Refused(
            "holds a token whose expiration_time has passed".into(),
        ));
    }
    let token_type = answer
        .get("token_type")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("has no \"token_type\""))?;
    let field = match token_type {
        "urn:ietf:params:oauth:token-type:id_token" | "urn:ietf:params:oauth:token-type:jwt" => {
            "id_token"
        }
        "urn:ietf:params:oauth:token-type:saml2" => "saml_response",
        other => {
            return Err(Unusable::Refused(format!(
                "has token_type {:?}; supported: urn:ietf:params:oauth:token-type:id_token, \
                 …:jwt, …:saml2",
                cut(other)
            )));
        }
    };
    let token = answer
        .get(field)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Unusable::Malformed(format!("has token_type {token_type} but no \"{field}\""))
        })?;
    Ok((token.to_string(), expiry))
}

/// Run the program; its standard output.
async fn run(config: &Config, exchange: &Exchange<'_>) -> std::result::Result<String, String> {
    let program = &config.argv[0];
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&config.argv[1..])
        .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", exchange.audience)
        .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", exchange.token_type)
        .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = &config.output_file {
        cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", path);
    }
    if let Some(email) = exchange.impersonated {
        cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
    }
    let child = cmd.spawn().map_err(|e| {
        format!("cannot run the executable {program} (credential_source.executable.command): {e}")
    })?;
    // Dropping the child on timeout kills it (kill_on_drop).
    let out = tokio::time::timeout(config.timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "the executable {program} did not finish within {} ms \
                 (credential_source.executable.timeout_millis) and was killed",
                config.timeout.as_millis()
            )
        })?
        .map_err(|e| format!("waiting for the executable {program}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let words = cut(stderr.trim());
        return Err(format!(
            "the executable {program} failed ({}){}",
            out.status,
            if words.is_empty() {
                String::new()
            } else {
                format!(": {words}")
            }
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| format!("the executable {program} printed something that is not UTF-8"))
}

/// The end of a program's words, cut to a readable length.
fn cut(words: &str) -> String {
    let chars: Vec<char> = words.chars().collect();
    let start = chars.len().saturating_sub(MAX_WORDS);
    chars[start..].iter().collect()
}

#[cfg(test)]
mod tests;
