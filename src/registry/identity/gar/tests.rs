use super::*;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

#[test]
fn the_credentials_file_variable_comes_first() {
    let c = GoogleCredentials::from_vars(
        vars(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", "/keys/sa.json"),
            ("GCE_METADATA_HOST", "127.0.0.1:1"),
        ]),
        |_| true,
    );
    assert!(
        matches!(&c, GoogleCredentials::File { path, origin: "GOOGLE_APPLICATION_CREDENTIALS" } if path == &PathBuf::from("/keys/sa.json"))
    );
    assert!(c.describe().contains("/keys/sa.json"));
}

#[test]
fn gcloud_well_known_file_then_the_metadata_server() {
    let c = GoogleCredentials::from_vars(vars(&[("HOME", "/home/u")]), |p| {
        p == std::path::Path::new("/home/u/.config/gcloud/application_default_credentials.json")
    });
    assert!(matches!(c, GoogleCredentials::File { .. }), "{c:?}");
    let c = GoogleCredentials::from_vars(vars(&[("HOME", "/home/u")]), |_| false);
    assert!(
        matches!(&c, GoogleCredentials::Metadata { host } if host == "metadata.google.internal")
    );
    let c = GoogleCredentials::from_vars(vars(&[("GCE_METADATA_HOST", "127.0.0.1:9")]), |_| false);
    assert!(c.describe().contains("127.0.0.1:9"));
}

#[tokio::test]
async fn an_unreadable_or_unknown_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.json");
    std::fs::write(&path, r#"{"type":"external_account_authorized_user"}"#).unwrap();
    let creds = GoogleCredentials::File {
        path: path.clone(),
        origin: "GOOGLE_APPLICATION_CREDENTIALS",
    };
    let p = GarProvider::new("europe-docker.pkg.dev", creds, reqwest::Client::new());
    let e = p.issue().await.unwrap_err().to_string();
    assert!(e.contains("creds.json") && e.contains("supported"), "{e}");
    std::fs::write(&path, r#"{"type":"service_account","client_email":"a@b"}"#).unwrap();
    let e = p.issue().await.unwrap_err().to_string();
    assert!(e.contains("private_key") && e.contains("creds.json"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let e = p.issue().await.unwrap_err().to_string();
    assert!(e.contains("cannot be read"), "{e}");
}
