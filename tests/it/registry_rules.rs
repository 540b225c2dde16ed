//! Self-tests of the rules proxy (`common::rules`): each documented rule of
//! ACR, ECR, Artifact Registry, nginx and `OCI-Chunk-Min-Length` registries
//! is enforced in front of a real `docker-registry`, and what the rule allows
//! still reaches the registry byte for byte. Requests are made with a plain
//! `reqwest` client, independent of regmirror.

use crate::common;

use common::{RegistryOptions, Rules, RulesProxy, TestRegistry, http_client, sha256_digest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};

const MIB: usize = 1024 * 1024;

/// Deterministic, incompressible-looking test bytes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// An upload session's URL, absolute.
async fn start_upload(base: &str, repo: &str) -> Result<String, (u16, String)> {
    let resp = http_client(None)
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .expect("POST to the rules proxy");
    let status = resp.status().as_u16();
    if status != 202 {
        return Err((status, resp.text().await.unwrap_or_default()));
    }
    let loc = resp.headers()[LOCATION].to_str().unwrap().to_string();
    Ok(if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    })
}

fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// Uploads `data` in parts of `part` bytes (each with `Content-Length` and
/// `Content-Range`), then completes with an empty `PUT`. Returns the
/// statuses of the PATCHes and of the PUT, and the PUT's body.
async fn chunked_upload(
    base: &str,
    repo: &str,
    data: &[u8],
    part: usize,
) -> (Vec<u16>, u16, String) {
    let client = http_client(None);
    let mut url = start_upload(base, repo).await.expect("upload session");
    let mut statuses = Vec::new();
    for (i, chunk) in data.chunks(part).enumerate() {
        let start = i * part;
        let resp = client
            .patch(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(
                CONTENT_RANGE,
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH through the rules proxy");
        statuses.push(resp.status().as_u16());
        if let Some(loc) = resp.headers().get(LOCATION) {
            let loc = loc.to_str().unwrap();
            url = if loc.starts_with("http") {
                loc.to_string()
            } else {
                format!("{base}{loc}")
            };
        }
    }
    let resp = client
        .put(with_digest(&url, &sha256_digest(data)))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .expect("PUT through the rules proxy");
    let status = resp.status().as_u16();
    (statuses, status, resp.text().await.unwrap_or_default())
}

/// A monolithic upload (POST, then one PUT with the whole body): the PUT's
/// status and body.
async fn monolithic_upload(base: &str, repo: &str, data: &[u8]) -> (u16, String) {
    let url = start_upload(base, repo).await.expect("upload session");
    let resp = http_client(None)
        .put(with_digest(&url, &sha256_digest(data)))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("PUT through the rules proxy");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The blob as the registry itself serves it, not through the proxy.
async fn blob_at(reg: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let resp = http_client(None)
        .get(format!("{}/v2/{repo}/blobs/{digest}", reg.base_url()))
        .send()
        .await
        .expect("GET blob from the registry");
    assert_eq!(resp.status().as_u16(), 200, "blob {digest} in {repo}");
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn acr_rules_refuse_large_monolithic_and_chunked_encoding_but_take_parts() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let acr = RulesProxy::start(&reg.base_url(), Rules::Acr).await;
    let base = acr.base_url();
    let big = bytes(21 * MIB, 1);

    let (status, body) = monolithic_upload(&base, "acr/app", &big).await;
    assert_eq!(status, 413);
    assert_eq!(
        body,
        "413 Request Entity Too Large - AzureContainerRegistry"
    );

    // A body without a declared length (Transfer-Encoding: chunked) is refused.
    let url = start_upload(&base, "acr/app").await.unwrap();
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
        bytes(MIB, 2),
    ))]);
    let resp = http_client(None)
        .patch(&url)
        .header(CONTENT_RANGE, format!("0-{}", MIB - 1))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("CONTENT_LENGTH_INVALID")
    );

    let (patches, put, body) = chunked_upload(&base, "acr/app", &big, 8 * MIB).await;
    assert_eq!(patches, vec![202, 202, 202]);
    assert_eq!(put, 201, "{body}");
    assert_eq!(blob_at(&reg, "acr/app", &sha256_digest(&big)).await, big);
    assert_eq!(acr.refusals().len(), 2, "{:?}", acr.refusals());
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_rules_need_created_repositories_and_five_mib_parts() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ecr = RulesProxy::start(&reg.base_url(), Rules::Ecr).await;
    let base = ecr.base_url();

    let (status, body) = start_upload(&base, "team/app").await.unwrap_err();
    assert_eq!(status, 404);
    assert!(
        body.contains("NAME_UNKNOWN") && body.contains("team/app"),
        "{body}"
    );

    ecr.create_repository("team/app");
    let data = bytes(12 * MIB + 17, 3);
    let (patches, put, body) = chunked_upload(&base, "team/app", &data, MIB).await;
    assert!(
        patches.iter().all(|s| *s == 201),
        "ECR answers PATCH with 201: {patches:?}"
    );
    assert_eq!(put, 400);
    assert!(body.contains("at least 5MB"), "{body}");

    let (patches, put, body) = chunked_upload(&base, "team/app", &data, 6 * MIB).await;
    assert_eq!(patches, vec![201, 201, 201]);
    assert_eq!(put, 201, "{body}");
    assert_eq!(blob_at(&reg, "team/app", &sha256_digest(&data)).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn gar_rules_need_content_length_on_a_bodiless_post() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let gar = RulesProxy::start(&reg.base_url(), Rules::Gar).await;
    let resp = http_client(None)
        .post(format!("{}/v2/p/r/app/blobs/uploads/", gar.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 411);
    assert!(resp.text().await.unwrap().contains("Length Required"));

    let data = bytes(3 * MIB, 4);
    let (status, body) = monolithic_upload(&gar.base_url(), "p/r/app", &data).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(blob_at(&reg, "p/r/app", &sha256_digest(&data)).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_rules_refuse_bodies_over_one_mib() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let nginx = RulesProxy::start(&reg.base_url(), Rules::Nginx).await;
    let base = nginx.base_url();
    let data = bytes(2 * MIB + 5, 5);

    let (status, body) = monolithic_upload(&base, "lib/app", &data).await;
    assert_eq!(status, 413);
    assert!(body.contains("<center>nginx</center>"), "{body}");

    let (patches, put, body) = chunked_upload(&base, "lib/app", &data, MIB).await;
    assert_eq!(patches, vec![202, 202, 202]);
    assert_eq!(put, 201, "{body}");
    assert_eq!(blob_at(&reg, "lib/app", &sha256_digest(&data)).await, data);
    assert!(nginx.bytes_up() >= data.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_min_length_is_announced_and_enforced() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&reg.base_url(), Rules::ChunkMin(2 * MIB as u64)).await;
    let base = proxy.base_url();
    let resp = http_client(None)
        .post(format!("{base}/v2/min/app/blobs/uploads/"))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(
        resp.headers()["oci-chunk-min-length"],
        (2 * MIB).to_string().as_str()
    );

    let data = bytes(5 * MIB, 6);
    let (_, put, body) = chunked_upload(&base, "min/app", &data, MIB).await;
    assert_eq!(put, 400);
    assert!(body.contains("OCI-Chunk-Min-Length"), "{body}");
    let (_, put, body) = chunked_upload(&base, "min/app", &data, 2 * MIB).await;
    assert_eq!(put, 201, "{body}");
    assert_eq!(blob_at(&reg, "min/app", &sha256_digest(&data)).await, data);
}
