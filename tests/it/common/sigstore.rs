//! A test Sigstore: a Fulcio-like certificate authority (a root and an
//! intermediate, ECDSA P-256), a Rekor-like log key, the `trusted_root.json`
//! naming them, and keyless signatures made with them, in cosign's two
//! layouts. Everything is made here with `rcgen` and `ring` (through
//! rcgen's keys); nothing is shared with regmirror.
//!
//! - Fulcio leaf certificates (Fulcio `docs/oid-info.md`): the signer's
//!   identity as a URI or e-mail SAN, the OIDC issuer in the extensions
//!   1.3.6.1.4.1.57264.1.1 (raw text) and 1.3.6.1.4.1.57264.1.8 (DER
//!   UTF8String), a validity of ten minutes, the code-signing extended key
//!   usage, and an embedded SCT of the test CT log (`sct`).
//! - Rekor `hashedrekord` v0.0.1 entries: the SHA-256 of the signed bytes,
//!   the signature and the PEM certificate; a signed entry timestamp (SET):
//!   the log key's ECDSA signature over the canonical JSON of `body`,
//!   `integratedTime`, `logID` (hex SHA-256 of the log's DER key) and
//!   `logIndex` (cosign `pkg/cosign/tlog.go`).
//! - cosign's legacy layout (`cosign sign` with a keyless certificate): a
//!   simple signing layer with `dev.cosignproject.cosign/signature`,
//!   `dev.sigstore.cosign/certificate`, `dev.sigstore.cosign/chain` and
//!   `dev.sigstore.cosign/bundle` (`{"SignedEntryTimestamp", "Payload":
//!   {"body", "integratedTime", "logIndex", "logID"}}`) annotations.
//! - `trusted_root.json`: the JSON form of sigstore/protobuf-specs
//!   `TrustedRoot` (`protos/sigstore_trustroot.proto`).
//! - Checkpoints (Rekor `pkg/util/signed_note.go`, as sigstore-python
//!   reads them): a signed note of the lines origin, tree size and base64
//!   root hash, then a blank line and `\u{2014} NAME base64(key hint ||
//!   signature)`, the key hint the first four bytes of the log ID.

use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
    SerialNumber, SigningKey as _,
};
use serde_json::{Value, json};

use super::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING, simple_signing_payload};
use super::image::Blob;
use super::sct::{self, Sct};

/// 2024-01-01T00:00:00Z, the epoch of the test certificates.
pub const T0: i64 = 1_704_067_200;
/// How long a test leaf certificate is valid (Fulcio: ten minutes).
pub const LEAF_LIFETIME: i64 = 600;
/// The OIDC issuer of GitHub Actions.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).to_vec()
}

/// A test Sigstore: its CA (root and intermediate) and its log key.
pub struct TestSigstore {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
    log: KeyPair,
    ct_log: KeyPair,
    name: String,
}

/// A Fulcio-like leaf certificate with its private key.
pub struct KeylessCert {
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// PEM of the certificate.
    pub pem: String,
    /// The PEM chain (intermediate, then root) cosign puts beside it.
    pub chain_pem: String,
    key: KeyPair,
}

impl KeylessCert {
    /// The leaf key's ECDSA P-256 (ASN.1 DER) signature of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(data).expect("signing with the leaf key")
    }
}

/// What to break in a keyless signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Nothing: a correct signature.
    None,
    /// The SET is signed, then the entry's logIndex changed.
    Set,
    /// The log entry is genuine but records another signature (replayed).
    ReplayedEntry,
}

/// A keyless signature made by [`TestSigstore::keyless_signature`]: what
/// cosign's legacy layout and a Sigstore bundle both carry.
pub struct KeylessSignature {
    /// The simple signing payload signed.
    pub payload: Vec<u8>,
    /// The leaf's signature of `payload`.
    pub signature: Vec<u8>,
    /// Its log entry.
    pub entry: Entry,
}

/// A log entry made by [`TestSigstore::log_entry`].
pub struct Entry {
    /// The base64 canonicalized body.
    pub body: String,
    pub integrated_time: i64,
    pub log_index: i64,
    /// The raw log ID.
    pub log_id: Vec<u8>,
    /// DER of the SET.
    pub set: Vec<u8>,
}

impl TestSigstore {
    /// A new CA and log named after `name`.
    pub fn new(name: &str) -> TestSigstore {
        let root_key = KeyPair::generate().expect("a root key");
        let mut root = ca_params(&format!("{name} root"));
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_cert = root.self_signed(&root_key).expect("self-signing the root");
        let root_issuer = Issuer::new(root, root_key);
        let inter_key = KeyPair::generate().expect("an intermediate key");
        let mut inter = ca_params(&format!("{name} intermediate"));
        inter.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter.use_authority_key_identifier_extension = true;
        let inter_cert = inter
            .signed_by(&inter_key, &root_issuer)
            .expect("signing the intermediate");
        TestSigstore {
            root_der: root_cert.der().to_vec(),
            intermediate_der: inter_cert.der().to_vec(),
            intermediate: Issuer::new(inter, inter_key),
            log: KeyPair::generate().expect("a log key"),
            ct_log: KeyPair::generate().expect("a CT log key"),
            name: name.to_string(),
        }
    }

    /// The log ID: SHA-256 of the log's DER public key.
    pub fn log_id(&self) -> Vec<u8> {
        sha256(&self.log.subject_public_key_info())
    }

    /// The log key's ECDSA P-256 (ASN.1 DER) signature of `data`.
    pub fn log_sign(&self, data: &[u8]) -> Vec<u8> {
        self.log.sign(data).expect("signing with the log key")
    }

    /// The log's DER public key.
    pub fn log_public_der(&self) -> Vec<u8> {
        self.log.subject_public_key_info()
    }

    /// The `trusted_root.json` naming this CA (valid from 2023) and log.
    pub fn trusted_root(&self) -> Value {
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": format!("https://rekor.{}.test", self.name),
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&self.log_public_der()),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2023-01-01T00:00:00Z"}
                },
                "logId": {"keyId": b64(&self.log_id())}
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "test", "commonName": self.name},
                "uri": format!("https://fulcio.{}.test", self.name),
                "certChain": {"certificates": [
                    {"rawBytes": b64(&self.intermediate_der)},
                    {"rawBytes": b64(&self.root_der)}
                ]},
                "validFor": {"start": "2023-01-01T00:00:00Z"}
            }],
            "ctlogs": [{
                "baseUrl": format!("https://ctfe.{}.test", self.name),
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&self.ct_log.subject_public_key_info()),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2023-01-01T00:00:00Z"}
                },
                "logId": {"keyId": b64(&sha256(&self.ct_log.subject_public_key_info()))}
            }],
            "timestampAuthorities": []
        })
    }

    /// A leaf for `san` (a URI when it has `://`, else an e-mail) from the
    /// OIDC `issuer`, valid from `T0 + from` for [`LEAF_LIFETIME`], with a
    /// valid SCT of this Sigstore's CT log.
    pub fn issue(&self, san: &str, issuer: &str, from: i64) -> KeylessCert {
        self.issue_with_sct(san, issuer, from, Sct::Valid)
    }

    /// As [`TestSigstore::issue`], with the SCT `sct`: the precertificate
    /// (the leaf without the SCT extension) is issued first, its TBS logged,
    /// then the final certificate with the SCT list.
    pub fn issue_with_sct(&self, san: &str, issuer: &str, from: i64, sct: Sct) -> KeylessCert {
        let key = KeyPair::generate().expect("a leaf key");
        let mut params = leaf_params(san, issuer, from);
        let precert = params
            .signed_by(&key, &self.intermediate)
            .expect("issuing a precertificate");
        let issuer_spki = self.intermediate.key().subject_public_key_info();
        let timestamp_ms = ((T0 + from) * 1000) as u64;
        let logged =
            |log: &KeyPair, tbs: &[u8]| sct::extension(log, timestamp_ms, &issuer_spki, tbs);
        let extension = match sct {
            Sct::Missing => None,
            Sct::Valid => Some(logged(&self.ct_log, &sct::tbs_of(precert.der()))),
            Sct::UnknownLog => Some(logged(
                &KeyPair::generate().expect("a CT log key"),
                &sct::tbs_of(precert.der()),
            )),
            Sct::OtherCertificate => {
                let other = leaf_params("https://example.com/another-certificate", issuer, from)
                    .signed_by(&key, &self.intermediate)
                    .expect("issuing another precertificate");
                Some(logged(&self.ct_log, &sct::tbs_of(other.der())))
            }
        };
        params.custom_extensions.extend(extension);
        let cert = params
            .signed_by(&key, &self.intermediate)
            .expect("issuing a leaf");
        KeylessCert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            chain_pem: pem("CERTIFICATE", &self.intermediate_der)
                + &pem("CERTIFICATE", &self.root_der),
            key,
        }
    }

    /// A checkpoint of this log for a tree of `size` entries with root
    /// hash `root_hash`, as a signed note.
    pub fn checkpoint(&self, size: u64, root_hash: &[u8]) -> String {
        let note = format!("rekor.{}.test - 1\n{size}\n{}\n", self.name, b64(root_hash));
        let mut signature = self.log_id()[..4].to_vec();
        signature.extend(
            self.log
                .sign(note.as_bytes())
                .expect("signing a checkpoint"),
        );
        format!(
            "{note}\n\u{2014} rekor.{}.test {}\n",
            self.name,
            b64(&signature)
        )
    }

    /// A `hashedrekord` entry for `signature` over bytes hashing to
    /// `sha256_hex` by `cert`, integrated at `T0 + time`, with its SET.
    pub fn log_entry(
        &self,
        sha256_hex: &str,
        signature: &[u8],
        cert: &KeylessCert,
        time: i64,
        tamper: Tamper,
    ) -> Entry {
        let recorded = if tamper == Tamper::ReplayedEntry {
            cert.sign(b"another payload")
        } else {
            signature.to_vec()
        };
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": sha256_hex}},
                "signature": {"content": b64(&recorded), "publicKey": {"content": b64(cert.pem.as_bytes())}}
            }
        });
        let body = b64(&serde_json::to_vec(&body).unwrap());
        let (integrated_time, log_index) = (T0 + time, 4242);
        let signed = format!(
            "{{\"body\":\"{body}\",\"integratedTime\":{integrated_time},\"logID\":\"{}\",\"logIndex\":{log_index}}}",
            hex(&self.log_id())
        );
        let set = self.log.sign(signed.as_bytes()).expect("signing a SET");
        Entry {
            body,
            integrated_time,
            log_index: if tamper == Tamper::Set {
                log_index + 1
            } else {
                log_index
            },
            log_id: self.log_id(),
            set,
        }
    }

    /// A keyless signature of `digest`'s simple signing payload: signed by
    /// `cert`, logged in this log at `T0 + time`.
    pub fn keyless_signature(
        &self,
        cert: &KeylessCert,
        docker_reference: &str,
        digest: &str,
        time: i64,
        tamper: Tamper,
    ) -> KeylessSignature {
        let payload = simple_signing_payload(docker_reference, digest);
        let signature = cert.sign(&payload);
        let entry = self.log_entry(&hex(&sha256(&payload)), &signature, cert, time, tamper);
        KeylessSignature {
            payload,
            signature,
            entry,
        }
    }

    /// A keyless signature layer of `digest` in cosign's legacy layout:
    /// signed by `cert`, logged in this log at `T0 + time`.
    pub fn legacy_layer(
        &self,
        cert: &KeylessCert,
        docker_reference: &str,
        digest: &str,
        time: i64,
        tamper: Tamper,
    ) -> Blob {
        let signed = self.keyless_signature(cert, docker_reference, digest, time, tamper);
        layer_of(cert, &signed)
    }
}

/// The cosign legacy layer of `signed`, made with `cert`.
pub fn layer_of(cert: &KeylessCert, signed: &KeylessSignature) -> Blob {
    let e = &signed.entry;
    let bundle = json!({
        "SignedEntryTimestamp": b64(&e.set),
        "Payload": {
            "body": e.body,
            "integratedTime": e.integrated_time,
            "logIndex": e.log_index,
            "logID": hex(&e.log_id)
        }
    });
    let mut layer = Blob::new(SIMPLE_SIGNING, signed.payload.clone());
    layer.annotations = vec![
        (SIGNATURE_ANNOTATION.to_string(), b64(&signed.signature)),
        (CERTIFICATE_ANNOTATION.to_string(), cert.pem.clone()),
        (CHAIN_ANNOTATION.to_string(), cert.chain_pem.clone()),
        (BUNDLE_ANNOTATION.to_string(), bundle.to_string()),
    ];
    layer
}

/// A Fulcio-like leaf's parameters (without SCT): `san` from the OIDC
/// `issuer`, valid from `T0 + from` for [`LEAF_LIFETIME`].
fn leaf_params(san: &str, issuer: &str, from: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    let name = san.to_string().try_into().expect("an IA5 SAN");
    params.subject_alt_names = vec![if san.contains("://") {
        SanType::URI(name)
    } else {
        SanType::Rfc822Name(name)
    }];
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.use_authority_key_identifier_extension = true;
    let mut serial = sha256(format!("{san} {from}").as_bytes())[..16].to_vec();
    serial[0] = serial[0] & 0x7f | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let base = rcgen::date_time_ymd(2024, 1, 1);
    params.not_before = base + Duration::from_secs(from as u64);
    params.not_after = base + Duration::from_secs((from + LEAF_LIFETIME) as u64);
    let mut v2 = vec![0x0c, issuer.len() as u8];
    v2.extend_from_slice(issuer.as_bytes());
    params.custom_extensions = vec![
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 1], issuer.into()),
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 8], v2),
    ];
    params
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2023, 1, 1);
    params.not_after = rcgen::date_time_ymd(2033, 1, 1);
    params
}
