//! Embedded signed certificate timestamps (SCTs) for the test Sigstore's
//! leaf certificates, as a certificate transparency log returns them to
//! Fulcio for a precertificate (RFC 6962):
//!
//! - s3.2: the log signs (ECDSA P-256, SHA-256) the `digitally-signed`
//!   struct { version v1 (0), signature_type certificate_timestamp (0),
//!   timestamp (u64 ms), entry_type precert_entry (1), issuer_key_hash (the
//!   SHA-256 of the issuer's DER public key), tbs_certificate (24-bit
//!   length: the final certificate's TBSCertificate without the SCT
//!   extension), extensions (16-bit length, empty) };
//! - s3.3: the SCT { version, log_id (SHA-256 of the log's DER public key),
//!   timestamp, extensions, hash algorithm sha256 (4), signature algorithm
//!   ecdsa (3), signature (16-bit length) } goes, as a 16-bit length
//!   prefixed `SignedCertificateTimestampList` of 16-bit length prefixed
//!   SCTs wrapped in a DER OCTET STRING, into extension
//!   1.3.6.1.4.1.11129.2.4.2.
//!
//! Written here from the RFC, independently of regmirror's checker.

use rcgen::{CustomExtension, KeyPair, PublicKeyData as _, SigningKey as _};

/// The OID of the embedded SCT list extension.
const OID_SCT_LIST: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

/// Which SCT a test leaf certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sct {
    /// A valid SCT of the test Sigstore's CT log.
    Valid,
    /// No SCT extension at all.
    Missing,
    /// A well-formed SCT of a CT log the trusted root does not list.
    UnknownLog,
    /// An SCT of the trusted CT log, but over another precertificate.
    OtherCertificate,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

fn u16_prefixed(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// The TBSCertificate of the DER certificate `der`.
pub fn tbs_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("a test certificate");
    cert.tbs_certificate.as_ref().to_vec()
}

/// The SCT list extension with `log`'s SCT at `timestamp_ms` for the
/// precertificate TBS `tbs` issued by the CA whose DER public key is
/// `issuer_spki`.
pub fn extension(
    log: &KeyPair,
    timestamp_ms: u64,
    issuer_spki: &[u8],
    tbs: &[u8],
) -> CustomExtension {
    let mut signed = vec![0u8, 0];
    signed.extend_from_slice(&timestamp_ms.to_be_bytes());
    signed.extend_from_slice(&[0, 1]);
    signed.extend_from_slice(&sha256(issuer_spki));
    signed.extend_from_slice(&u32::try_from(tbs.len()).unwrap().to_be_bytes()[1..]);
    signed.extend_from_slice(tbs);
    signed.extend_from_slice(&[0, 0]);
    let signature = log.sign(&signed).expect("signing an SCT");

    let mut sct = vec![0u8];
    sct.extend_from_slice(&sha256(&log.subject_public_key_info()));
    sct.extend_from_slice(&timestamp_ms.to_be_bytes());
    sct.extend_from_slice(&[0, 0, 4, 3]);
    sct.extend_from_slice(&u16_prefixed(&signature));
    let list = u16_prefixed(&u16_prefixed(&sct));
    let mut content = vec![0x04];
    match list.len() {
        n if n < 0x80 => content.push(n as u8),
        n if n < 0x100 => content.extend_from_slice(&[0x81, n as u8]),
        n => content.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    content.extend_from_slice(&list);
    CustomExtension::from_oid_content(OID_SCT_LIST, content)
}
