//! Amazon ECR: a registry credential from `GetAuthorizationToken`, asked
//! with the AWS default credential chain (environment keys, shared config
//! and profiles, a web identity token file as IRSA mounts it, EKS Pod
//! Identity and other container credentials, then IMDSv2 on EC2). The
//! region comes from the host (`<account>.dkr.ecr.<region>.amazonaws.com`),
//! else from the chain (`AWS_REGION`, the profile). `AWS_ENDPOINT_URL`
//! (or `AWS_ENDPOINT_URL_ECR`) points the calls elsewhere, as the SDK
//! documents. The answer is base64 of `AWS:<password>`, valid 12 hours.

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
    client: OnceCell<aws_sdk_ecr::Client>,
}

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
    /// The provider for `host`. ECR Public (`public.ecr.aws`) is not
    /// supported yet: its images pull anonymously.
    pub fn for_host(host: &str) -> Result<EcrProvider> {
        if host.eq_ignore_ascii_case("public.ecr.aws") {
            return Err(Error::Config {
                host: host.to_string(),
                detail: "auth = \"ecr\" does not support ECR Public (public.ecr.aws) yet: drop \
                         the auth key to pull its public images anonymously"
                    .into(),
            });
        }
        Ok(EcrProvider {
            host: host.to_string(),
            region: region_of(host),
            client: OnceCell::new(),
        })
    }

    /// The ECR API client, built on first use.
    pub async fn client(&self) -> &aws_sdk_ecr::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(r) = &self.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                aws_sdk_ecr::Client::new(&loader.load().await)
            })
            .await
    }

    async fn issue_now(&self) -> Result<IssuedCredential> {
        let err = |detail: String| Error::Auth {
            op: Op::Token,
            target: self.host.clone(),
            detail,
        };
        let out = self
            .client()
            .await
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "ECR GetAuthorizationToken failed: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| err("ECR GetAuthorizationToken answered without a token".into()))?;
        let token = data.authorization_token().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| err("ECR answered with a token that is not base64 text".into()))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| err("ECR answered with a token that is not user:password".into()))?;
        Ok(IssuedCredential {
            username: username.to_string(),
            password: Secret::new(password),
            expires_at: data
                .expires_at()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        })
    }
}

impl IdentityProvider for EcrProvider {
    fn name(&self) -> &'static str {
        "ecr"
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
        Some(self)
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
        assert!(EcrProvider::for_host("public.ecr.aws").is_err());
    }
}
