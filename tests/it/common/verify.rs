//! Independent checks of what a registry holds, with the harness's own
//! reader (plain `reqwest`, no regmirror code).

use std::collections::HashSet;

use super::Pusher;

/// What is wrong with `repo:tag` at the reader's registry, if anything: its
/// digest is not `want`, or a manifest or blob it reaches (children,
/// configs, layers; foreign layers excepted) is missing from `repo`.
pub async fn graph_problems(pusher: &Pusher, repo: &str, tag: &str, want: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let bytes = match pusher.get_manifest(repo, tag).await {
        Ok((_, b)) => b,
        Err(e) => return vec![format!("{repo}:{tag}: {e:#}")],
    };
    let got = super::sha256_digest(&bytes);
    if got != want {
        problems.push(format!("{repo}:{tag} is {got}, expected {want}"));
    }
    let mut queue = vec![bytes];
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(bytes) = queue.pop() {
        let doc: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{repo}: a manifest is not JSON: {e}"));
                continue;
            }
        };
        for child in doc["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap_or_default().to_string();
            if !seen.insert(d.clone()) {
                continue;
            }
            match pusher.get_manifest(repo, &d).await {
                Ok((_, b)) if super::sha256_digest(&b) == d => queue.push(b),
                Ok(_) => problems.push(format!("{repo}@{d}: bytes do not match the digest")),
                Err(e) => problems.push(format!("{repo}@{d} (child of {tag}): {e:#}")),
            }
        }
        let blobs = doc["config"].as_object().into_iter().chain(
            doc["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_object()),
        );
        for b in blobs {
            if b.contains_key("urls") {
                continue;
            }
            let d = b["digest"].as_str().unwrap_or_default().to_string();
            if !seen.insert(d.clone()) {
                continue;
            }
            match pusher.blob_exists(repo, &d).await {
                Ok(true) => {}
                Ok(false) => problems.push(format!("{repo}: blob {d} (under {tag}) is missing")),
                Err(e) => problems.push(format!("{repo}: blob {d}: {e:#}")),
            }
        }
    }
    problems
}
