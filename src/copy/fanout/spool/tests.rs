//! The spool without a registry: the source is a stream the test feeds
//! chunk by chunk, so what a reader gets while the fetch is still running
//! is seen exactly, with no timing involved.

use super::*;
use futures_util::StreamExt;
use tokio::sync::mpsc;

const KIB: usize = 1024;

/// A source the test feeds: chunks sent on the returned sender, the end
/// when it is dropped.
fn fed() -> (mpsc::UnboundedSender<Result<Bytes, Error>>, ByteStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Box::pin(stream))
}

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn src() -> Reference {
    Reference::parse("127.0.0.1:5000/team/app").unwrap()
}

/// A spool of `data`'s digest and size, filled from `body`.
fn spool_of(data: &[u8], body: ByteStream) -> Arc<Spool> {
    let digest = Digest::sha256_of(data);
    Spool::start(async move { Ok(body) }, &src(), &digest, data.len() as u64).unwrap()
}

/// The next chunk of `reader`, which must have one.
async fn chunk(reader: &mut ByteStream) -> Bytes {
    reader.next().await.expect("a chunk").expect("no error")
}

#[tokio::test]
async fn readers_stream_while_the_fetch_runs_and_get_the_last_byte_once_verified() {
    let data = blob(600 * KIB);
    let (tx, body) = fed();
    let spool = spool_of(&data, body);
    let (mut fast, mut slow) = (spool.reader().unwrap(), spool.reader().unwrap());
    // The whole blob is sent, but the source has not ended: nothing is
    // verified yet, so a reader gets every byte but the last.
    tx.send(Ok(Bytes::from(data.clone()))).unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() - 1 {
        let c = chunk(&mut fast).await;
        assert!(c.len() <= SPOOL_READ_BYTES, "a chunk of {} bytes", c.len());
        got.extend_from_slice(&c);
    }
    assert_eq!(
        got,
        data[..data.len() - 1],
        "all but the last byte, in order"
    );
    assert!(!spool.failed());
    // The source ends: the blob is verified and the last byte follows.
    drop(tx);
    got.extend_from_slice(&chunk(&mut fast).await);
    assert!(fast.next().await.is_none(), "the end after the last byte");
    assert_eq!(got, data);
    // The reader that did not read meanwhile reads the whole from the file.
    let mut late = Vec::new();
    while let Some(c) = slow.next().await {
        late.extend_from_slice(&c.unwrap());
    }
    assert_eq!(late, data);
}

#[tokio::test]
async fn a_reader_does_not_get_the_last_byte_before_the_source_ends() {
    let data = blob(300 * KIB);
    let (tx, body) = fed();
    let spool = spool_of(&data, body);
    let mut reader = spool.reader().unwrap();
    tx.send(Ok(Bytes::from(data.clone()))).unwrap();
    let mut got = 0;
    while got < data.len() - 1 {
        got += chunk(&mut reader).await.len();
    }
    assert_eq!(got, data.len() - 1);
    let last = tokio::spawn(async move { reader.next().await.map(|r| r.map(|b| b.len())) });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        !last.is_finished(),
        "the last byte came before verification"
    );
    drop(tx);
    assert_eq!(last.await.unwrap().unwrap().unwrap(), 1);
}

/// Every reader fails with the source's error and never gets the last
/// byte; the spool says it failed.
async fn assert_every_reader_fails(spool: &Arc<Spool>, readers: Vec<ByteStream>, want: &str) {
    for mut reader in readers {
        let mut got = 0;
        let error = loop {
            match reader.next().await {
                Some(Ok(c)) => got += c.len() as u64,
                Some(Err(e)) => break e,
                None => panic!("a reader reached the end of a blob that failed"),
            }
        };
        assert!(got < spool.origin.size, "{got} bytes delivered");
        assert!(error.to_string().contains(want), "{error}");
    }
    assert!(spool.failed());
}

#[tokio::test]
async fn a_corrupt_source_fails_every_reader_with_the_digest_mismatch() {
    let data = blob(700 * KIB);
    let mut corrupt = data.clone();
    corrupt[650 * KIB] ^= 1;
    let (tx, body) = fed();
    let spool = spool_of(&data, body);
    let readers = vec![spool.reader().unwrap(), spool.reader().unwrap()];
    for part in corrupt.chunks(100 * KIB) {
        tx.send(Ok(Bytes::copy_from_slice(part))).unwrap();
    }
    drop(tx);
    assert_every_reader_fails(&spool, readers, "content has digest").await;
    let late = spool.reader().unwrap();
    assert_every_reader_fails(&spool, vec![late], "content has digest").await;
}

#[tokio::test]
async fn a_short_or_long_source_fails_every_reader_with_the_size_mismatch() {
    let data = blob(10 * KIB);
    for sent in [
        data[..9 * KIB].to_vec(),
        [data.clone(), vec![0; 5]].concat(),
    ] {
        let (tx, body) = fed();
        let spool = spool_of(&data, body);
        let readers = vec![spool.reader().unwrap(), spool.reader().unwrap()];
        tx.send(Ok(Bytes::from(sent))).unwrap();
        drop(tx);
        assert_every_reader_fails(&spool, readers, "expected 10240").await;
    }
}

#[tokio::test]
async fn a_source_that_breaks_off_fails_every_reader_with_its_error() {
    let data = blob(400 * KIB);
    let (tx, body) = fed();
    let spool = spool_of(&data, body);
    let readers = vec![spool.reader().unwrap(), spool.reader().unwrap()];
    tx.send(Ok(Bytes::copy_from_slice(&data[..300 * KIB])))
        .unwrap();
    tx.send(Err(Error::Connection {
        op: Op::GetBlob,
        target: "127.0.0.1:5000/team/app".into(),
        detail: "connection reset by the source".into(),
    }))
    .unwrap();
    assert_every_reader_fails(&spool, readers, "connection reset by the source").await;
}

#[tokio::test]
async fn the_file_is_deleted_with_the_last_holder() {
    let data = blob(KIB);
    let (tx, body) = fed();
    let spool = spool_of(&data, body);
    let path = spool.file.path().to_path_buf();
    let mut reader = spool.reader().unwrap();
    tx.send(Ok(Bytes::from(data.clone()))).unwrap();
    drop(tx);
    drop(spool);
    assert!(path.exists(), "a reader still reads it");
    let mut got = Vec::new();
    while let Some(c) = reader.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, data);
    drop(reader);
    assert!(!path.exists(), "{} left behind", path.display());
}
