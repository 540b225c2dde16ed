//! Transparency log checkpoints: the signed tree heads an inclusion proof
//! leads to, in the signed note format (golang.org/x/mod/sumdb/note, as
//! Rekor writes them and sigstore/protobuf-specs `Checkpoint.envelope`
//! carries them):
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root hash>\n[<other lines>\n]
//! \n
//! — <signer name> <base64(key hint || signature)>\n
//! ```
//!
//! The signature covers the text before the blank line (its last newline
//! included); the key hint is the first four bytes of the SHA-256 of the
//! log's DER public key, which is the log ID a trusted root lists.

use super::trusted_root::{LogKey, b64};

/// Largest checkpoint text read.
const MAX_TEXT: usize = 16 * 1024;
/// Most signature lines looked at.
const MAX_SIGNATURES: usize = 16;

/// A checkpoint whose signature by the log checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// How many entries the tree has.
    pub size: u64,
    /// The tree's root hash.
    pub root: [u8; 32],
}

/// The checkpoint in `text`, its signature by `log` checked; `Err` says
/// what is wrong.
pub fn verify(text: &str, log: &LogKey) -> Result<Checkpoint, String> {
    if text.len() > MAX_TEXT {
        return Err(format!(
            "its checkpoint is {} bytes long, more than {MAX_TEXT}",
            text.len()
        ));
    }
    let split = text
        .find("\n\n")
        .ok_or("its checkpoint is not a signed note (no blank line before the signatures)")?;
    let (body, signatures) = (&text[..split + 1], &text[split + 2..]);
    let checkpoint = parse_body(body)?;
    let hint = log.log_id.get(..4).ok_or("the log's ID is too short")?;
    let signed = signatures
        .lines()
        .take(MAX_SIGNATURES)
        .filter_map(signature_line)
        .any(|sig| {
            sig.len() > 4 && &sig[..4] == hint && log.key.verifies(body.as_bytes(), &sig[4..])
        });
    if !signed {
        return Err(format!(
            "its checkpoint is not signed by the key of the log {} (signed by another key, \
             altered after signing, or no `— <key name> <signature>` line)",
            log.name
        ));
    }
    Ok(checkpoint)
}

/// The origin, size and root hash lines.
fn parse_body(body: &str) -> Result<Checkpoint, String> {
    let mut lines = body.lines();
    let origin = lines.next().filter(|o| !o.is_empty());
    let origin = origin.ok_or("its checkpoint has no origin line")?;
    let size = lines
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("its checkpoint's second line is not a tree size")?;
    let root = lines
        .next()
        .and_then(|r| b64(r).ok())
        .and_then(|r| <[u8; 32]>::try_from(r).ok())
        .ok_or("its checkpoint's third line is not a base64 SHA-256 root hash")?;
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        root,
    })
}

/// The decoded signature of a `— <name> <base64>` line; `None` for any
/// other line, a key name with spaces included (a signed note's key name
/// has none: golang.org/x/mod/sumdb/note).
fn signature_line(line: &str) -> Option<Vec<u8>> {
    let rest = line.strip_prefix("\u{2014} ")?;
    let (name, sig) = rest.split_once(' ')?;
    if name.is_empty() || sig.contains(' ') {
        return None;
    }
    b64(sig).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::policy::keys::PublicKey;
    use crate::copy::policy::trusted_root::Validity;
    use base64::Engine as _;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

    /// A log key made with ring, and its signer.
    fn log() -> (LogKey, EcdsaKeyPair) {
        let rng = ring::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng).unwrap();
        // SubjectPublicKeyInfo of a P-256 key: a fixed 26-byte prefix.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let key = LogKey {
            name: "https://rekor.test".into(),
            log_id: super::super::rekor::sha256(&spki).to_vec(),
            key: PublicKey::from_spki(&spki).unwrap(),
            valid: Validity::default(),
        };
        (key, pair)
    }

    fn note(body: &str, hint: &[u8], pair: &EcdsaKeyPair, signed: &str) -> String {
        let rng = ring::rand::SystemRandom::new();
        let sig = pair.sign(&rng, signed.as_bytes()).unwrap();
        let mut blob = hint.to_vec();
        blob.extend_from_slice(sig.as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("{body}\n\u{2014} rekor.test {b64}\n")
    }

    #[test]
    fn a_checkpoint_signed_by_the_log_is_read() {
        let (key, pair) = log();
        let root = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let body = format!("rekor.test - 42\n12\n{root}\nTimestamp: 1\n");
        let c = verify(&note(&body, &key.log_id[..4], &pair, &body), &key).unwrap();
        assert_eq!(c.origin, "rekor.test - 42");
        assert_eq!((c.size, c.root), (12, [7u8; 32]));
        // Another key's hint, an altered body, another signer.
        let e = verify(&note(&body, &[0, 0, 0, 0], &pair, &body), &key).unwrap_err();
        assert!(e.contains("not signed by the key of the log"), "{e}");
        let altered = note(&body, &key.log_id[..4], &pair, &body).replacen("\n12\n", "\n13\n", 1);
        assert!(verify(&altered, &key).is_err());
        let (_, other) = log();
        assert!(verify(&note(&body, &key.log_id[..4], &other, &body), &key).is_err());
        // The right signature under a key name with spaces.
        let spaced = note(&body, &key.log_id[..4], &pair, &body).replacen(
            "\u{2014} rekor.test ",
            "\u{2014} rekor.test - 42 ",
            1,
        );
        let e = verify(&spaced, &key).unwrap_err();
        assert!(e.contains("not signed by the key of the log"), "{e}");
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let (key, _) = log();
        for text in [
            "",
            "origin\n12\n",
            "\n\n",
            "o\nx\nAAAA\n\n",
            "o\n1\nAAAA\n\n— a b\n",
        ] {
            assert!(verify(text, &key).is_err(), "{text:?}");
        }
        assert!(verify(&"x".repeat(MAX_TEXT + 1), &key).is_err());
    }
}
