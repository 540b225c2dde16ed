//! `[events] peers` misbehaving: the sync-now API forwards a request about
//! a mirror another shard owns to that shard, and reads its answer only up
//! to a cap. A real `regmirror serve` cannot send an endless answer, so the
//! peer here is a fake (a loopback socket that streams a chunked body
//! forever); the replica asked is the real binary.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::events_in::{mirror_toml, start_with};
use common::serve::free_port;
use common::{RegistryOptions, TestRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fake peer on loopback at 127.0.1.1 (shard 1's address through the
/// `peers` template): to every request it answers 200 with a chunked
/// body that never ends, until the reader hangs up. Its port and the bytes
/// of body it managed to write.
async fn endless_peer() -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.1.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(start).await.is_err() {
                    return;
                }
                let mut chunk = b"10000\r\n".to_vec();
                chunk.extend(std::iter::repeat_n(b' ', 0x10000));
                chunk.extend_from_slice(b"\r\n");
                while s.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(0x10000, Ordering::Relaxed);
                }
            });
        }
    });
    (port, written)
}

/// A replica of two shards asked to sync a mirror the other shard owns
/// forwards the request to `[events] peers`; that peer answers with a body
/// that never ends: the caller gets 502 naming the peer and the cap, and
/// the replica stops reading (the peer's writes fail soon after the cap,
/// far below what a 10 s read of loopback would take).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_endless_answer_to_a_forwarded_api_request_is_cut_at_the_cap() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (peer_port, written) = endless_peer().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "peer-70ken-c4p\n").unwrap();
    let mut names = Vec::new();
    for wanted in [0u32, 1] {
        let name = (0..)
            .map(|i| format!("m{i}"))
            .find(|n| regmirror::sync::shard::owner(n, 2) == wanted)
            .unwrap();
        names.push(name);
    }
    let (port, events_port) = (free_port(), free_port());
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[shard]\ncount = 2\n\n\
         [events]\nlisten = \"127.0.0.1:{events_port}\"\napi_token_file = \"token\"\n\
         peers = \"http://127.0.{{index}}.1:{peer_port}\"\n\n"
    );
    for name in &names {
        config.push_str(&mirror_toml(name, &src, &format!("team/{name}"), &dst));
    }
    let d = start_with(dir.path(), port, &config, &["--shard-index", "0"]).await;

    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{events_port}/api/v1/mirrors/{}/sync",
            names[1]
        ))
        .bearer_auth("peer-70ken-c4p")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 502, "{body}");
    let peer = format!(
        "http://127.0.1.1:{peer_port}/api/v1/mirrors/{}/sync",
        names[1]
    );
    assert!(
        body.contains("shard 1") && body.contains(&peer) && body.contains("over 1048576 bytes"),
        "{body}"
    );
    // The replica hung up: the fake's writes stop growing.
    let mut last = written.load(Ordering::Relaxed);
    d.wait_for(
        "the peer's writes to stop",
        Duration::from_secs(20),
        async || {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = written.load(Ordering::Relaxed);
            let stopped = now == last;
            last = now;
            stopped
        },
    )
    .await;
    assert!(
        (1024 * 1024..64 * 1024 * 1024).contains(&last),
        "the peer wrote {last} bytes: more than the cap, and not on until the 10 s timeout"
    );
    assert!(!d.log().contains("peer-70ken-c4p"), "{}", d.log());
}
