use super::*;
use serde_json::json;

const ID: &str = "urn:ietf:params:oauth:token-type:id_token";

fn refused(v: Value) -> String {
    match parse(&v) {
        Err(Unusable::Refused(w)) => w,
        Err(Unusable::Malformed(w)) => panic!("malformed, not refused: {w}"),
        Ok(_) => panic!("accepted {v}"),
    }
}

fn malformed(v: Value) -> String {
    match parse(&v) {
        Err(Unusable::Malformed(w)) => w,
        Err(Unusable::Refused(w)) => panic!("refused, not malformed: {w}"),
        Ok(_) => panic!("accepted {v}"),
    }
}

#[test]
fn answers_as_google_documents_them() {
    let (t, exp) = parse(&json!({"version": 1, "success": true, "token_type": ID,
        "id_token": "h.p.s", "expiration_time": 4_000_000_000u64}))
    .unwrap_or_else(|_| panic!("an OIDC answer"));
    assert_eq!((t.as_str(), exp), ("h.p.s", Some(4_000_000_000)));
    let (t, exp) = parse(&json!({"version": 1, "success": true,
        "token_type": "urn:ietf:params:oauth:token-type:saml2", "saml_response": "PHNhbWw+"}))
    .unwrap_or_else(|_| panic!("a SAML answer"));
    assert_eq!((t.as_str(), exp), ("PHNhbWw+", None));
    let w = refused(json!({"version": 1, "success": false, "code": "401",
        "message": "Caller not authorized."}));
    assert!(
        w.contains("code 401") && w.contains("Caller not authorized."),
        "{w}"
    );
    let w = refused(json!({"version": 1, "success": true, "token_type": ID,
        "id_token": "h.p.s", "expiration_time": 1}));
    assert!(w.contains("expiration_time") && !w.contains("h.p.s"), "{w}");
    assert!(refused(json!({"version": 2, "success": true})).contains("version 2"));
    assert!(malformed(json!({"success": true})).contains("version"));
    assert!(malformed(json!({"version": 1})).contains("success"));
    assert!(malformed(json!({"version": 1, "success": false})).contains("code"));
    assert!(
        malformed(json!({"version": 1, "success": true, "token_type": ID})).contains("id_token")
    );
}

#[test]
fn timeouts_within_googles_bounds() {
    let c = config(&json!({"command": "/bin/tok --a=1  --b"})).unwrap();
    assert_eq!(c.argv, ["/bin/tok", "--a=1", "--b"]);
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert!(c.output_file.is_none());
    let c = config(&json!({"command": "x", "timeout_millis": 5000, "output_file": "/o"})).unwrap();
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.output_file.as_deref(), Some("/o"));
    for bad in [json!(4999), json!(120_001), json!("5000")] {
        let e = config(&json!({"command": "x", "timeout_millis": bad}))
            .err()
            .unwrap();
        assert!(e.contains("timeout_millis"), "{e}");
    }
    assert!(
        config(&json!({"command": " "}))
            .err()
            .unwrap()
            .contains("command")
    );
}

#[test]
fn a_cached_answer_is_used_only_while_unexpired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let p = path.to_str().unwrap();
    assert_eq!(cached(p).unwrap(), None, "no file: run the program");
    let fresh = json!({"version": 1, "success": true, "token_type": ID, "id_token": "t1",
        "expiration_time": 4_000_000_000u64});
    std::fs::write(&path, fresh.to_string()).unwrap();
    assert_eq!(cached(p).unwrap().as_deref(), Some("t1"));
    let mut stale = fresh.clone();
    stale["expiration_time"] = json!(1);
    std::fs::write(&path, stale.to_string()).unwrap();
    assert_eq!(cached(p).unwrap(), None, "expired: run the program");
    let mut no_expiry = fresh;
    no_expiry.as_object_mut().unwrap().remove("expiration_time");
    std::fs::write(&path, no_expiry.to_string()).unwrap();
    assert_eq!(
        cached(p).unwrap(),
        None,
        "no expiration_time counts as expired"
    );
    std::fs::write(&path, r#"{"version":1,"success":true}"#).unwrap();
    let e = cached(p).unwrap_err();
    assert!(e.contains("out.json") && e.contains("token_type"), "{e}");
}
