//! Amazon ECR: a registry credential from `GetAuthorizationToken`, asked
//! with the AWS default credential chain (environment keys, shared config
//! and profiles, a web identity token file as IRSA mounts it, EKS Pod
//! Identity and other container credentials, then IMDSv2 on EC2). The
//! region comes from the host (`<account>.dkr.ecr.<region>.amazonaws.com`),
//! else from the chain (`AWS_REGION`, the profile). `AWS_ENDPOINT_URL`
//! (or `AWS_ENDPOINT_URL_ECR`) points the calls elsewhere, as the SDK
//! documents. The answer is base64 of `AWS:<password>`, valid 12 hours.
//!
//! ECR Public (`public.ecr.aws`, `auth = "ecr-public"`) is the same with
//! `ecr-public:GetAuthorizationToken`, always in `us-east-1`
//! (`AWS_ENDPOINT_URL_ECR_PUBLIC` or `AWS_ENDPOINT_URL` points it
//! elsewhere); it creates no repositories here.

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_sdk_ecr::error::DisplayErrorContext;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::{IdentityProvider, IssuedCredential, RepositoryCreator, RepositorySettings};
use crate::registry::config::Secret;
use crate::registry::error::{Error, Op, Result};

/// The ECR identity provider of one registry host.
#[derive(Debug)]
pub struct EcrProvider {
    host: String,
    region: Option<String>,
    /// ECR Public: `ecr-public:GetAuthorizationToken` in `us-east-1`.
    public: bool,
    config: OnceCell<aws_config::SdkConfig>,
    client: OnceCell<aws_sdk_ecr::Client>,
}

/// The only region of the ECR Public API.
pub const ECR_PUBLIC_REGION: &str = "us-east-1";

/// The region of an ECR host name, if it names one.
pub fn region_of(host: &str) -> Option<String> {
    let h = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let rest = h
        .strip_suffix(".amazonaws.com")
        .or_else(|| h.strip_suffix(".amazonaws.com.cn"))?;
    let (_, region) = rest
        .split_once(".dkr.ecr.")
        .or_else(|| rest.split_once(".dkr.ecr-fips."))?;
    // A region is one host label: never route the ECR API elsewhere.
    let label = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    label.then(|| region.to_string())
}

impl EcrProvider {
    /// The provider for `host`; `public.ecr.aws` is ECR Public.
    pub fn for_host(host: &str) -> Result<EcrProvider> {
        if host.eq_ignore_ascii_case("public.ecr.aws") {
            return Ok(EcrProvider::public(host));
        }
        Ok(EcrProvider {
            host: host.to_string(),
            region: region_of(host),
            public: false,
            config: OnceCell::new(),
            client: OnceCell::new(),
        })
    }

    /// The ECR Public provider for `host` (`auth = "ecr-public"`).
    pub fn public(host: &str) -> EcrProvider {
        EcrProvider {
            host: host.to_string(),
            region: Some(ECR_PUBLIC_REGION.to_string()),
            public: true,
            config: OnceCell::new(),
            client: OnceCell::new(),
        }
    }

    /// The AWS configuration (credential chain, region), loaded on first use.
    async fn sdk_config(&self) -> &aws_config::SdkConfig {
        self.config
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(r) = &self.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                loader.load().await
            })
            .await
    }

    /// The ECR API client, built on first use.
    pub async fn client(&self) -> &aws_sdk_ecr::Client {
        self.client
            .get_or_init(|| async { aws_sdk_ecr::Client::new(self.sdk_config().await) })
            .await
    }

    /// `ecr-public:GetAuthorizationToken`: one token, base64 of `AWS:<password>`.
    async fn issue_public(&self) -> Result<(String, Option<SystemTime>)> {
        let client = aws_sdk_ecrpublic::Client::new(self.sdk_config().await);
        let out = client.get_authorization_token().send().await.map_err(|e| {
            self.token_error(format!(
                "ECR Public GetAuthorizationToken failed: {}",
                aws_sdk_ecrpublic::error::DisplayErrorContext(&e)
            ))
        })?;
        let data = out.authorization_data().ok_or_else(|| {
            self.token_error("ECR Public GetAuthorizationToken answered without a token".into())
        })?;
        Ok((
            data.authorization_token().unwrap_or_default().to_string(),
            data.expires_at()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        ))
    }

    /// `ecr:GetAuthorizationToken`: the first token, base64 of `AWS:<password>`.
    async fn issue_private(&self) -> Result<(String, Option<SystemTime>)> {
        let out = self
            .client()
            .await
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| {
                self.token_error(format!(
                    "ECR GetAuthorizationToken failed: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        let data = out.authorization_data().first().ok_or_else(|| {
            self.token_error("ECR GetAuthorizationToken answered without a token".into())
        })?;
        Ok((
            data.authorization_token().unwrap_or_default().to_string(),
            data.expires_at()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        ))
    }

    fn token_error(&self, detail: String) -> Error {
        Error::Auth {
            op: Op::Token,
            target: self.host.clone(),
            detail,
        }
    }

    async fn issue_now(&self) -> Result<IssuedCredential> {
        let (token, expires_at) = if self.public {
            self.issue_public().await?
        } else {
            self.issue_private().await?
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                self.token_error("ECR answered with a token that is not base64 text".into())
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            self.token_error("ECR answered with a token that is not user:password".into())
        })?;
        Ok(IssuedCredential {
            username: username.to_string(),
            password: Secret::new(password),
            expires_at,
        })
    }
}

impl IdentityProvider for EcrProvider {
    fn name(&self) -> &'static str {
        if self.public { "ecr-public" } else { "ecr" }
    }

    fn describe(&self) -> String {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let chain = if let Some(f) = env("AWS_WEB_IDENTITY_TOKEN_FILE") {
            let role = env("AWS_ROLE_ARN").unwrap_or_else(|| "no AWS_ROLE_ARN".into());
            format!("web identity token file {f} for role {role}")
        } else if env("AWS_ACCESS_KEY_ID").is_some() {
            "access keys from the environment".to_string()
        } else if env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
            || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        {
            "container credentials (EKS Pod Identity, ECS task role)".to_string()
        } else if let Some(p) = env("AWS_PROFILE") {
            format!("profile {p} of the shared AWS config")
        } else {
            "AWS default credential chain (shared config, then instance metadata)".to_string()
        };
        let region = self
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "from the AWS config".into());
        format!("{chain}, region {region}")
    }

    fn issue(&self) -> BoxFuture<'_, Result<IssuedCredential>> {
        Box::pin(self.issue_now())
    }

    fn repositories(&self) -> Option<&dyn RepositoryCreator> {
        (!self.public).then_some(self as &dyn RepositoryCreator)
    }
}

impl RepositoryCreator for EcrProvider {
    fn create_repository<'a>(
        &'a self,
        name: &'a str,
        settings: &'a RepositorySettings,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.create_now(name, settings))
    }
}

impl EcrProvider {
    /// ECR `CreateRepository` with `settings`.
    async fn create_now(&self, name: &str, settings: &RepositorySettings) -> Result<bool> {
        use aws_sdk_ecr::types::{
            EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
        };
        let mut req = self
            .client()
            .await
            .create_repository()
            .repository_name(name);
        if let Some(m) = &settings.tag_mutability {
            req = req.image_tag_mutability(ImageTagMutability::from(m.as_str()));
        }
        if let Some(scan) = settings.scan_on_push {
            req = req.image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(scan)
                    .build(),
            );
        }
        if let Some(kind) = &settings.encryption {
            let mut enc = EncryptionConfiguration::builder()
                .encryption_type(EncryptionType::from(kind.as_str()));
            if let Some(key) = &settings.kms_key {
                enc = enc.kms_key(key);
            }
            req = req.encryption_configuration(enc.build().map_err(|e| Error::Config {
                host: self.host.clone(),
                detail: format!("repository_encryption: {e}"),
            })?);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_already_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::Auth {
                op: Op::Setup,
                target: format!("{}/{name}", self.host),
                detail: format!(
                    "ECR CreateRepository for {name} failed: {}",
                    DisplayErrorContext(&e)
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_from_hosts() {
        assert_eq!(
            region_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region_of("127.0.0.1:5000"), None);
        assert_eq!(region_of("1.dkr.ecr.x/y.amazonaws.com"), None);
        let public = EcrProvider::for_host("public.ecr.aws").unwrap();
        assert_eq!(public.name(), "ecr-public");
        assert!(public.describe().contains("region us-east-1"));
        assert!(public.repositories().is_none());
    }
}
