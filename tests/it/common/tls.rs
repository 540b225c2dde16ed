//! A throwaway certificate authority for TLS registries and token signing.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A CA generated in the test (ECDSA P-256), able to issue leaf certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A leaf certificate issued by a [`TestCa`] with its private key.
pub struct Leaf {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// DER of the certificate.
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM of the private key.
    pub key_pem: String,
}

impl TestCa {
    /// Generates a new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .expect("empty subject alt names are valid");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generating a P-256 CA key");
        let cert = params.self_signed(&key).expect("self-signing the test CA");
        let cert_pem = cert.pem();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem,
        }
    }

    /// PEM of the CA certificate (what clients must trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server certificate for `127.0.0.1` and `localhost`.
    pub fn server_leaf(&self) -> Leaf {
        self.leaf(
            "regmirror-test-server",
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A TLS client certificate (mutual TLS).
    pub fn client_leaf(&self) -> Leaf {
        self.leaf(
            "regmirror-test-client",
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A signing certificate (no SANs), e.g. for JWTs carried in an `x5c` header.
    pub fn signing_leaf(&self, common_name: &str) -> Leaf {
        self.leaf(common_name, Vec::new(), Vec::new())
    }

    fn leaf(
        &self,
        common_name: &str,
        sans: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(sans).expect("loopback subject alt names are valid");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        let key = KeyPair::generate().expect("generating a P-256 leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf certificate with the test CA");
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }
}
