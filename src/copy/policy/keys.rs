//! Public keys a signature policy trusts: PEM files as `cosign
//! generate-key-pair` and `openssl` write them (`PUBLIC KEY`, an X.509
//! SubjectPublicKeyInfo; or `RSA PUBLIC KEY`, PKCS#1), of three kinds:
//! ECDSA P-256 (signatures ASN.1 DER over SHA-256, as cosign makes them),
//! RSA 2048 to 8192 bits (PKCS#1 v1.5 or PSS over SHA-256) and Ed25519.
//!
//! Parsing uses `x509-parser`; verification uses `ring`, which checks
//! signatures with public keys only (no private-key operation is ever
//! made here).

use ring::signature::{self, UnparsedPublicKey};

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// The algorithm of a [`PublicKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA over P-256 with SHA-256.
    EcdsaP256,
    /// RSA with SHA-256, PKCS#1 v1.5 or PSS padding.
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa => "RSA",
            KeyKind::Ed25519 => "Ed25519",
        }
    }
}

/// A public key, ready to verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    /// The key as `ring` takes it: the uncompressed point (ECDSA), the
    /// PKCS#1 `RSAPublicKey` DER (RSA) or the 32 key bytes (Ed25519).
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.kind.name())
    }
}

impl PublicKey {
    /// The key of a PEM text; `Err` says what is wrong with it.
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text).map_err(|e| {
            format!("it is not a PEM public key ({e}); expected a file as `cosign generate-key-pair` writes cosign.pub")
        })?;
        match pem.label.as_str() {
            "PUBLIC KEY" => PublicKey::from_spki(&pem.contents),
            "RSA PUBLIC KEY" => Ok(PublicKey {
                kind: KeyKind::Rsa,
                bytes: pem.contents,
            }),
            other => Err(format!(
                "it holds a {other:?} PEM block, not a public key (\"PUBLIC KEY\"); give the \
                 public half, e.g. cosign.pub, never a private key"
            )),
        }
    }

    /// The key of a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, String> {
        use x509_parser::prelude::FromDer as _;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| format!("its public key cannot be read: {e}"))?;
        let oid = spki.algorithm.algorithm.to_id_string();
        let bytes = spki.subject_public_key.data.to_vec();
        let kind = match oid.as_str() {
            OID_EC_PUBLIC_KEY if bytes.len() == 65 && bytes[0] == 4 => KeyKind::EcdsaP256,
            OID_EC_PUBLIC_KEY => {
                return Err(
                    "it is an elliptic-curve key of another curve than P-256 (or a compressed \
                     point); cosign keys are P-256"
                        .to_string(),
                );
            }
            OID_RSA => KeyKind::Rsa,
            OID_ED25519 if bytes.len() == 32 => KeyKind::Ed25519,
            _ => {
                return Err(format!(
                    "its key algorithm {oid} is not supported: use an ECDSA P-256, RSA or \
                     Ed25519 public key"
                ));
            }
        };
        Ok(PublicKey { kind, bytes })
    }

    /// Its algorithm.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// True when `sig` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        let check = |alg: &'static dyn signature::VerificationAlgorithm| {
            UnparsedPublicKey::new(alg, &self.bytes)
                .verify(message, sig)
                .is_ok()
        };
        match self.kind {
            KeyKind::EcdsaP256 => check(&signature::ECDSA_P256_SHA256_ASN1),
            KeyKind::Rsa => {
                check(&signature::RSA_PKCS1_2048_8192_SHA256)
                    || check(&signature::RSA_PSS_2048_8192_SHA256)
            }
            KeyKind::Ed25519 => check(&signature::ED25519),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_public_key() {
        assert!(PublicKey::from_pem(b"not pem").is_err());
        let private = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = PublicKey::from_pem(private).unwrap_err();
        assert!(e.contains("never a private key"), "{e}");
        let junk = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(PublicKey::from_pem(junk).is_err());
    }

    #[test]
    fn ed25519_keys_verify_their_signatures_only() {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        // SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let key = PublicKey::from_spki(&spki).unwrap();
        assert_eq!(key.kind(), KeyKind::Ed25519);
        let sig = pair.sign(b"payload");
        assert!(key.verifies(b"payload", sig.as_ref()));
        assert!(!key.verifies(b"another payload", sig.as_ref()));
    }
}
