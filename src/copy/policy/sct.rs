//! Signed certificate timestamps (SCTs) of keyless certificates: a
//! certificate transparency (CT) log's promise that it logged the
//! certificate, embedded in the certificate itself, as Fulcio issues them.
//!
//! When the trusted root lists CT logs (`ctlogs`), a leaf certificate must
//! carry, in its extension 1.3.6.1.4.1.11129.2.4.2 (RFC 6962 s3.3, an OCTET
//! STRING holding a TLS `SignedCertificateTimestampList`), at least one v1
//! SCT:
//!
//! - from a CT log of the trusted root (its log ID, the SHA-256 of the
//!   log's DER public key, is listed), valid at the SCT's timestamp;
//! - whose signature (SHA-256, the log key's algorithm) verifies over the
//!   RFC 6962 s3.2 `digitally-signed` struct for a precertificate entry:
//!   version 0, signature type 0 (certificate_timestamp), the timestamp
//!   (milliseconds), entry type 1 (precert_entry), the SHA-256 of the
//!   issuer's DER public key, the precertificate's TBSCertificate (the
//!   leaf's, without the SCT extension; 24-bit length) and the SCT's
//!   extensions (16-bit length).
//!
//! A trusted root without CT logs (a private Sigstore without one) does not
//! require SCTs, as there is no log to check them against. CT logs whose key
//! cannot be used (see `trusted_root`) still make SCTs required.

use sha2::Digest as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::der::{encode, tlv};
use super::trusted_root::{LogKey, TrustedRoot};

/// The SCT list extension (RFC 6962 s3.3).
const OID_SCT_LIST: &str = "1.3.6.1.4.1.11129.2.4.2";
/// Its DER encoding, as it appears in the certificate.
const OID_SCT_LIST_DER: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02,
];
/// TLS `HashAlgorithm` sha256 (RFC 5246 s7.4.1.4.1).
const HASH_SHA256: u8 = 4;

/// Checks that `leaf`, issued by the CA whose DER public key is
/// `issuer_spki`, carries a valid SCT of a CT log of `root` (when `root`
/// lists any); `Err` says what is wrong and what to do.
pub fn check(
    root: &TrustedRoot,
    leaf: &X509Certificate<'_>,
    issuer_spki: &[u8],
) -> Result<(), String> {
    if root.ct_logs.is_empty() && root.ct_unusable.is_empty() {
        return Ok(());
    }
    let scts = leaf
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_SCT_LIST)
        .map(|e| match e.parsed_extension() {
            ParsedExtension::SCT(list) => Ok(list),
            _ => Err(format!(
                "its certificate's signed certificate timestamp list (extension {OID_SCT_LIST}) \
                 cannot be read"
            )),
        })
        .transpose()?
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            format!(
                "its certificate carries no signed certificate timestamp (SCT), but the trusted \
                 root {} lists certificate transparency logs: the certificate was not logged, \
                 or not issued by a Fulcio that logs its certificates",
                root.name
            )
        })?;
    let tbs = precert_tbs(leaf.tbs_certificate.as_ref()).ok_or_else(|| {
        "its certificate's TBSCertificate cannot be read to check its SCT".to_string()
    })?;
    let issuer_key_hash: [u8; 32] = sha2::Sha256::digest(issuer_spki).into();
    let mut why: Vec<String> = root
        .ct_unusable
        .iter()
        .map(|e| format!("the trusted root's {e}, so its SCTs do not count"))
        .collect();
    for sct in scts {
        let log = root.ct_logs.iter().find(|l| l.log_id == sct.id.key_id[..]);
        let Some(log) = log else {
            why.push(format!(
                "an SCT is from the CT log {}, which the trusted root does not list",
                hex(sct.id.key_id)
            ));
            continue;
        };
        match verify(log, sct, &issuer_key_hash, &tbs) {
            Ok(()) => return Ok(()),
            Err(e) => why.push(e),
        }
    }
    Err(format!(
        "its certificate has no valid signed certificate timestamp of a CT log of the trusted \
         root {}: {}; refresh the trusted root if its CT logs changed",
        root.name,
        why.join("; ")
    ))
}

/// Checks one SCT from `log`.
fn verify(
    log: &LogKey,
    sct: &x509_parser::extensions::SignedCertificateTimestamp<'_>,
    issuer_key_hash: &[u8; 32],
    tbs: &[u8],
) -> Result<(), String> {
    let name = &log.name;
    if sct.version.0 != 0 {
        return Err(format!(
            "the SCT of {name} is of version {}, not v1",
            sct.version.0 + 1
        ));
    }
    let seconds = i64::try_from(sct.timestamp / 1000).unwrap_or(i64::MAX);
    if !log.valid.contains(seconds) {
        return Err(format!(
            "the SCT of {name} is dated when that CT log was not valid"
        ));
    }
    if sct.signature.hash_alg_id != HASH_SHA256 {
        return Err(format!(
            "the SCT of {name} is signed with hash algorithm {}, not SHA-256",
            sct.signature.hash_alg_id
        ));
    }
    let signed = signed_data(sct.timestamp, issuer_key_hash, tbs, sct.extensions.0)
        .ok_or_else(|| format!("the SCT of {name} covers a certificate too large"))?;
    if !log.key.verifies(&signed, sct.signature.data) {
        return Err(format!(
            "the SCT of {name} does not verify: it was issued for another certificate, or altered"
        ));
    }
    Ok(())
}

/// The RFC 6962 s3.2 `digitally-signed` struct of a precertificate SCT.
fn signed_data(
    timestamp: u64,
    issuer_key_hash: &[u8; 32],
    tbs: &[u8],
    ext: &[u8],
) -> Option<Vec<u8>> {
    let tbs_len = u32::try_from(tbs.len()).ok().filter(|n| *n < 1 << 24)?;
    let ext_len = u16::try_from(ext.len()).ok()?;
    let mut out = Vec::with_capacity(tbs.len() + ext.len() + 50);
    out.extend_from_slice(&[0, 0]); // v1, certificate_timestamp
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // precert_entry
    out.extend_from_slice(issuer_key_hash);
    out.extend_from_slice(&tbs_len.to_be_bytes()[1..]);
    out.extend_from_slice(tbs);
    out.extend_from_slice(&ext_len.to_be_bytes());
    out.extend_from_slice(ext);
    Some(out)
}

/// The TBSCertificate DER `tbs` without its SCT list extension (the
/// extensions block dropped when nothing else is left); `None` when it is
/// not DER of the expected shape.
fn precert_tbs(tbs: &[u8]) -> Option<Vec<u8>> {
    let (tag, body, rest) = tlv(tbs)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut fields = Vec::new();
    let mut input = body;
    while !input.is_empty() {
        let (tag, content, rest) = tlv(input)?;
        let field = &input[..input.len() - rest.len()];
        if tag == 0xa3 {
            let (0x30, mut exts, []) = tlv(content)? else {
                return None;
            };
            let mut kept = Vec::new();
            while !exts.is_empty() {
                let (_, ext, after) = tlv(exts)?;
                if !ext.starts_with(OID_SCT_LIST_DER) {
                    kept.extend_from_slice(&exts[..exts.len() - after.len()]);
                }
                exts = after;
            }
            if !kept.is_empty() {
                fields.extend(encode(0xa3, &encode(0x30, &kept)));
            }
        } else {
            fields.extend_from_slice(field);
        }
        input = rest;
    }
    Some(encode(0x30, &fields))
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sct_extension_is_removed_from_the_tbs() {
        let sct_ext = encode(0x30, &[OID_SCT_LIST_DER, &[0x04, 0x01, 0x00]].concat());
        let other_ext = encode(0x30, &[0x06, 0x03, 0x55, 0x1d, 0x0f, 0x04, 0x01, 0x00]);
        let version = encode(0xa0, &[0x02, 0x01, 0x02]);
        let long = encode(0x04, &[7u8; 300]);
        let with = |exts: &[u8]| {
            encode(
                0x30,
                &[&version[..], &long, &encode(0xa3, &encode(0x30, exts))].concat(),
            )
        };
        let full = with(&[&other_ext[..], &sct_ext].concat());
        assert_eq!(precert_tbs(&full), Some(with(&other_ext)));
        let only_sct = with(&sct_ext);
        assert_eq!(
            precert_tbs(&only_sct),
            Some(encode(0x30, &[&version[..], &long].concat()))
        );
        assert_eq!(precert_tbs(&full[..full.len() - 1]), None);
        assert_eq!(precert_tbs(b""), None);
    }

    #[test]
    fn the_signed_struct_follows_rfc_6962() {
        let s = signed_data(0x0102, &[9; 32], b"tbs", b"").unwrap();
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 1];
        want.extend_from_slice(&[9; 32]);
        want.extend_from_slice(&[0, 0, 3]);
        want.extend_from_slice(b"tbs");
        want.extend_from_slice(&[0, 0]);
        assert_eq!(s, want);
    }
}
