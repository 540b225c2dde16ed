//! `regmirror trigger`: ask a running `serve` to sync one mirror now
//! through its sync-now API (`[events] listen`), and with `--wait` follow
//! the run to its end and exit as `sync` would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use regmirror::registry::escape::shown;

use super::Exit;

/// Long help of `regmirror trigger`.
pub const LONG_ABOUT: &str = "Ask a running `regmirror serve` to sync one mirror now, through \
the sync-now API on its [events] listen address (POST /api/v1/mirrors/NAME/sync), with the \
bearer token of [events] api_token_file. Prints the run id; with --wait, polls the run until \
it ends, prints its state and report as JSON and exits as `sync` would (0 success, 1 failed, \
3 partial, 5 deferred). A request for a mirror whose run is already queued joins that run.";

/// Examples of `regmirror trigger`.
pub const AFTER_HELP: &str = "\
Examples:
  regmirror trigger --url http://127.0.0.1:9102 --token-file /run/secrets/api-token nginx
  regmirror trigger --url http://regmirror:9102 --token-file token nginx --tag 1.27 --wait";

/// Arguments of `regmirror trigger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the serve's events listener (http://HOST:PORT of [events] listen).
    #[arg(long, value_name = "URL", env = "REGMIRROR_TRIGGER_URL")]
    pub url: String,
    /// File holding the API token (the file of [events] api_token_file).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// The mirror to sync (its `name` in the config).
    #[arg(value_name = "MIRROR")]
    pub mirror: String,
    /// Only this tag of the mirror's repository (still subject to the mirror's filters).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only this repository, for a mirror that discovers its repositories.
    #[arg(long, value_name = "PATH")]
    pub repository: Option<String>,
    /// Wait for the run to end, print it as JSON and exit with its result.
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds (exit 1).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let token = std::fs::read_to_string(&args.token_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the API token file {}: {e}",
            args.token_file.display()
        )
    })?;
    let token = token.trim_end_matches(['\r', '\n']).to_string();
    let base = args.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
    let mut url = url::Url::parse(&format!("{base}/api/v1/mirrors/"))
        .map_err(|e| anyhow::anyhow!("--url {}: not a URL ({e})", shown(&args.url)))?;
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("--url {}: not an http(s) URL", shown(&args.url)))?
        .pop_if_empty()
        .extend([args.mirror.as_str(), "sync"]);
    {
        let mut q = url.query_pairs_mut();
        if let Some(t) = &args.tag {
            q.append_pair("tag", t);
        }
        if let Some(r) = &args.repository {
            q.append_pair("repository", r);
        }
    }
    let url = url.to_string().trim_end_matches('?').to_string();
    let queued = call(http.post(&url).bearer_auth(&token), &url).await?;
    let id = queued.get("id").and_then(|v| v.as_u64()).ok_or_else(|| {
        anyhow::anyhow!(
            "{url} answered without a run id: {}",
            shown(&queued.to_string())
        )
    })?;
    if !args.wait {
        println!(
            "{}",
            serde_json::json!({ "id": id, "mirror": args.mirror, "state": "queued" })
        );
        return Ok(Exit::Ok);
    }
    let run_url = format!("{base}/api/v1/runs/{id}");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let record = call(http.get(&run_url).bearer_auth(&token), &run_url).await?;
        let state = record
            .get("state")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if state == "done" || state == "dropped" {
            println!("{}", serde_json::to_string_pretty(&record)?);
            return Ok(exit_of(&record));
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "run {id} of mirror {} is still {state} after {} s; follow it with GET {run_url}",
                args.mirror,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Send `request`; its JSON body, or an error with the server's words.
async fn call(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<serde_json::Value> {
    let resp = request.send().await.map_err(|e| {
        anyhow::anyhow!(
            "{url}: no answer ({e}); is `regmirror serve` running with [events] listen there?"
        )
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let words = body
        .get("error")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(300).collect());
    anyhow::bail!("{url}: HTTP {status}: {}", shown(words.trim()))
}

/// The exit code of a finished run record, as `sync` would exit.
fn exit_of(record: &serde_json::Value) -> Exit {
    match record.pointer("/report/result").and_then(|v| v.as_str()) {
        Some("success") => Exit::Ok,
        Some("partial") => Exit::Partial,
        Some("deferred") => Exit::Deferred,
        Some("interrupted") => Exit::Interrupted,
        _ => Exit::Failed,
    }
}
