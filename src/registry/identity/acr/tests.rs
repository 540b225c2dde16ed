use super::*;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

#[test]
fn a_client_secret_comes_first() {
    let id = AzureIdentity::from_vars(vars(&[
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_CLIENT_SECRET", "s3cret"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
    ]));
    assert!(matches!(id, AzureIdentity::ClientSecret { .. }), "{id:?}");
    assert!(!id.describe().contains("s3cret"));
    assert!(!format!("{id:?}").contains("s3cret"));
}

#[test]
fn workload_identity_reads_the_federated_token_file_and_authority() {
    let id = AzureIdentity::from_vars(vars(&[
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
    ]));
    match &id {
        AzureIdentity::WorkloadIdentity {
            authority,
            token_file,
            ..
        } => {
            assert_eq!(authority, "https://login.microsoftonline.us");
            assert_eq!(token_file, &PathBuf::from("/var/run/token"));
        }
        other => panic!("{other:?}"),
    }
    assert!(id.describe().contains("/var/run/token"));
    assert_eq!(id.tenant(), Some("t"));
}

#[test]
fn managed_identity_is_the_fallback() {
    let id = AzureIdentity::from_vars(vars(&[("AZURE_CLIENT_ID", "c")]));
    match &id {
        AzureIdentity::ManagedIdentity {
            client_id: Some(c),
            endpoint: ManagedEndpoint::Imds { base },
        } => {
            assert_eq!(c, "c");
            assert_eq!(base, DEFAULT_IMDS);
        }
        other => panic!("{other:?}"),
    }
    let app = AzureIdentity::from_vars(vars(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token"),
        ("IDENTITY_HEADER", "h"),
    ]));
    assert!(matches!(
        app,
        AzureIdentity::ManagedIdentity {
            endpoint: ManagedEndpoint::AppService { .. },
            ..
        }
    ));
    assert_eq!(app.tenant(), None);
}

#[test]
fn the_service_is_the_registry_host_with_its_port() {
    let id = AzureIdentity::from_vars(vars(&[]));
    let p = AcrProvider::new("http://127.0.0.1:5000", id.clone(), reqwest::Client::new()).unwrap();
    assert_eq!(p.service, "127.0.0.1:5000");
    let p = AcrProvider::new("https://x.azurecr.io", id.clone(), reqwest::Client::new()).unwrap();
    assert_eq!(p.service, "x.azurecr.io");
    assert_eq!(p.name(), "acr");
    assert!(AcrProvider::new("not a url", id, reqwest::Client::new()).is_err());
}

#[tokio::test]
async fn a_cleartext_authority_off_loopback_is_refused_before_sending_the_secret() {
    let id = AzureIdentity::from_vars(vars(&[
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_CLIENT_SECRET", "s3cret"),
        ("AZURE_AUTHORITY_HOST", "http://login.example"),
    ]));
    let p = AcrProvider::new("https://x.azurecr.io", id, reqwest::Client::new()).unwrap();
    let e = p.issue().await.unwrap_err().to_string();
    assert!(e.contains("must use https"), "{e}");
    assert!(!e.contains("s3cret"));
}

#[tokio::test]
async fn a_missing_federated_token_file_is_named() {
    let id = AzureIdentity::from_vars(vars(&[
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/azure-token"),
    ]));
    let p = AcrProvider::new("https://x.azurecr.io", id, reqwest::Client::new()).unwrap();
    let e = p.issue().await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent/azure-token"), "{e}");
    assert!(e.contains("AZURE_FEDERATED_TOKEN_FILE"), "{e}");
}
