//! Login flows, session reuse and renewal, limits and error kinds, against a fake transport.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pbx_plugin_sdk::testing::FakeHost;
use pbx_plugin_sdk::{ErrorKind, Host, PluginError};
use pbx_salesforce::auth::{jwt_assertion, parse_soap_login};
use pbx_salesforce::client::{SESSION_KEY, USAGE_KEY};
use pbx_salesforce::{AuthMethod, Client, SalesforceConfig, Session, SfError};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::Verifier;
use serde_json::{Value, json};
use sha2::Sha256;

const INVALID_SESSION: &[u8] =
    br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    form(body)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn expired_session_is_renewed_once_and_the_request_retried() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "OLD");
    host.push_response(401, &[], INVALID_SESSION);
    host.push_response(200, &[], &common::token_body("NEW"));
    host.push_response(
        201,
        &[("Sforce-Limit-Info", "api-usage=10/15000")],
        br#"{"id":"00T000000000001AAA","success":true,"errors":[]}"#,
    );
    let client = Client::new(&host, cfg);
    let id = client
        .create("Task", &json!({"Subject": "Inbound call"}))
        .expect("created after renewal");
    assert_eq!(id, "00T000000000001AAA");
    let reqs = host.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].header_value("authorization"), Some("Bearer OLD"));
    assert_eq!(
        reqs[1].url,
        "https://login.salesforce.com/services/oauth2/token"
    );
    let body = reqs[1].body.as_deref().expect("form");
    assert_eq!(form_value(body, "grant_type").as_deref(), Some("password"));
    assert_eq!(
        form_value(body, "password"),
        Some(format!("{}{}", common::PASSWORD, common::SECURITY_TOKEN)),
        "security token appended to the password"
    );
    assert_eq!(
        form_value(body, "client_id").as_deref(),
        Some("CONSUMER-KEY")
    );
    assert_eq!(
        form_value(body, "username").as_deref(),
        Some("integration@example.com")
    );
    assert_eq!(
        reqs[1].header_value("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(reqs[2].header_value("authorization"), Some("Bearer NEW"));
    assert_eq!(client.request_count(), 3);
    // The new session is cached for the next invocation.
    let cached: Session =
        serde_json::from_str(&host.state_value(SESSION_KEY).expect("cached")).expect("json");
    assert_eq!(cached.access_token, "NEW");
    assert_eq!(cached.issued_at_ms, 1_278_448_832_702);
    assert_eq!(client.usage().map(|u| u.used), Some(10));
    common::assert_no_secret_leaks(&host, &[]);
}

#[test]
fn a_second_invalid_session_is_not_retried_again() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "OLD");
    host.push_response(401, &[], INVALID_SESSION);
    host.push_response(200, &[], &common::token_body("NEW"));
    host.push_response(401, &[], INVALID_SESSION);
    let client = Client::new(&host, cfg);
    let err = client
        .query::<Value>("SELECT Id FROM Contact")
        .expect_err("still invalid");
    assert!(err.is_session(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(host.requests().len(), 3);
}

#[test]
fn a_session_not_valid_for_rest_is_not_renewed() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "SOAPONLY");
    host.push_response(
        401,
        &[],
        br#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#,
    );
    let err = Client::new(&host, cfg)
        .query::<Value>("SELECT Id FROM Contact")
        .expect_err("refused");
    assert!(matches!(err, SfError::Forbidden { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(host.requests().len(), 1, "no login, no retry");
}

#[test]
fn cached_session_is_reused_and_other_settings_force_a_login() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "CACHED");
    host.push_response(200, &[], br#"{"totalSize":0,"done":true,"records":[]}"#);
    Client::new(&host, cfg.clone())
        .query::<Value>("SELECT Id FROM Contact")
        .expect("query");
    assert_eq!(
        host.requests().len(),
        1,
        "no login when a session is cached"
    );

    // Another user: the cached session is not theirs.
    let mut other = cfg;
    other.username = Some("someone-else@example.com".into());
    host.push_response(200, &[], &common::token_body("FRESH"));
    host.push_response(200, &[], br#"{"totalSize":0,"done":true,"records":[]}"#);
    Client::new(&host, other)
        .query::<Value>("SELECT Id FROM Contact")
        .expect("query");
    let reqs = host.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].url.ends_with("/services/oauth2/token"));
    assert_eq!(reqs[2].header_value("authorization"), Some("Bearer FRESH"));
}

#[test]
fn bad_password_is_a_config_error_without_secrets() {
    let cfg = common::config();
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    host.push_response(
        400,
        &[],
        br#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
    );
    let err = Client::new(&host, cfg).login().expect_err("refused");
    assert_eq!(
        err,
        SfError::Auth {
            error: "invalid_grant".into(),
            description: "authentication failure".into()
        }
    );
    let pe = PluginError::from(err.clone());
    assert_eq!(pe.kind, ErrorKind::Config);
    let (field, message) = pbx_salesforce::auth::explain_auth_failure(
        AuthMethod::Password,
        "invalid_grant",
        "authentication failure",
    );
    assert_eq!(field, "salesforce.security_token");
    common::assert_no_secret_leaks(&host, &[pe.message, err.to_string(), message]);
}

#[test]
fn missing_secret_names_it() {
    let host = FakeHost::new();
    let err = Client::new(&host, common::config())
        .login()
        .expect_err("no secrets");
    assert_eq!(
        err,
        SfError::Config {
            field: "salesforce.password".into(),
            message: "is not set for this tenant".into()
        }
    );
    assert!(host.requests().is_empty());
}

#[test]
fn security_token_is_optional() {
    let host = FakeHost::new();
    host.set_secret("salesforce.password", "pw");
    host.set_secret("salesforce.client_secret", "cs");
    host.push_response(200, &[], &common::token_body("T"));
    Client::new(&host, common::config()).login().expect("login");
    let body = host.requests()[0].body.clone().expect("body");
    assert_eq!(form_value(&body, "password").as_deref(), Some("pw"));
}

#[test]
fn refresh_token_flow() {
    let mut cfg = common::config();
    cfg.auth = AuthMethod::RefreshToken;
    cfg.login_url = Some("sandbox".into());
    cfg.username = None;
    let host = FakeHost::new();
    host.set_secret("salesforce.refresh_token", "RT-1");
    host.push_response(200, &[], &common::token_body("T"));
    let s = Client::new(&host, cfg).login().expect("login");
    assert_eq!(s.access_token, "T");
    let req = &host.requests()[0];
    assert_eq!(req.url, "https://test.salesforce.com/services/oauth2/token");
    let f = form(req.body.as_deref().expect("body"));
    assert!(f.contains(&("grant_type".into(), "refresh_token".into())));
    assert!(f.contains(&("refresh_token".into(), "RT-1".into())));
    assert!(!f.iter().any(|(k, _)| k == "client_secret"), "optional");
}

fn test_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/test-key-pkcs8.pem"
    ))
    .expect("key")
}

fn verify_jwt(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(header, json!({"alg": "RS256"}));
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&test_key()).expect("key");
    let verifier = VerifyingKey::<Sha256>::new(key.to_public_key());
    let sig = Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).expect("b64").as_slice())
        .expect("sig");
    verifier
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("signature verifies with the public key");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("claims")
}

#[test]
fn jwt_assertion_is_rs256_signed_with_the_right_claims() {
    let jwt = jwt_assertion(
        "CONSUMER",
        "user@example.com",
        "https://test.salesforce.com",
        1_700_000_000,
        &test_key(),
    )
    .expect("jwt");
    let claims = verify_jwt(&jwt);
    assert_eq!(
        claims,
        json!({"iss":"CONSUMER","sub":"user@example.com","aud":"https://test.salesforce.com","exp":1_700_000_180})
    );
    // PKCS#1 keys work too.
    let pkcs1 = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/test-key-pkcs1.pem"
    ))
    .expect("key");
    let jwt1 = jwt_assertion("C", "u", "https://login.salesforce.com", 0, &pkcs1).expect("jwt");
    verify_jwt(&jwt1);
}

#[test]
fn bad_private_key_is_a_config_error_naming_the_secret() {
    let err = jwt_assertion(
        "C",
        "u",
        "a",
        0,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    )
    .expect_err("bad key");
    assert!(matches!(&err, SfError::Config { field, .. } if field == "salesforce.private_key"));
    assert!(!err.to_string().contains("AAAA"));
    let err = jwt_assertion("C", "u", "a", 0, "hunter2").expect_err("not pem");
    assert!(!err.to_string().contains("hunter2"));
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn jwt_flow_posts_the_assertion() {
    let mut cfg = common::config();
    cfg.auth = AuthMethod::Jwt;
    cfg.login_url = Some("https://acme.my.salesforce.com".into());
    let host = FakeHost::new();
    host.set_secret("salesforce.private_key", &test_key());
    host.push_response(
        200,
        &[],
        br#"{"access_token":"12345","scope":"web api","instance_url":"https://na15.salesforce.com","id":"https://na15.salesforce.com/id/00Di0000000icUB/0DFi00000008UYO","token_type":"Bearer"}"#,
    );
    let s = Client::new(&host, cfg).login().expect("login");
    assert_eq!(s.instance_url, "https://na15.salesforce.com");
    assert_eq!(s.issued_at_ms, host.now_ms(), "no issued_at: host clock");
    let req = &host.requests()[0];
    assert_eq!(
        req.url,
        "https://acme.my.salesforce.com/services/oauth2/token"
    );
    let body = req.body.as_deref().expect("body");
    assert_eq!(
        form_value(body, "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let claims = verify_jwt(&form_value(body, "assertion").expect("assertion"));
    assert_eq!(claims["aud"], "https://login.salesforce.com");
    assert_eq!(claims["sub"], "integration@example.com");
    assert_eq!(claims["exp"], host.now_ms() / 1000 + 180);
}

#[test]
fn soap_login_success_and_fault() {
    let ok = pbx_plugin_sdk::http::Response {
        status: 200,
        headers: vec![],
        body: br#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result><metadataServerUrl>https://na15-api.salesforce.com/services/Soap/m/59.0/00D</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>https://na15-api.salesforce.com/services/Soap/u/59.0/00D</serverUrl><sessionId>00D!SESSION</sessionId><userId>005</userId></result></loginResponse></soapenv:Body></soapenv:Envelope>"#.to_vec(),
    };
    let s = parse_soap_login(&ok, 5).expect("session");
    assert_eq!(s.access_token, "00D!SESSION");
    assert_eq!(s.instance_url, "https://na15.salesforce.com");
    let fault = pbx_plugin_sdk::http::Response {
        status: 500,
        headers: vec![],
        body: br#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#.to_vec(),
    };
    assert_eq!(
        parse_soap_login(&fault, 5).expect_err("fault"),
        SfError::Auth {
            error: "INVALID_LOGIN".into(),
            description: "Invalid username, password, security token; or user locked out.".into()
        }
    );
}

#[test]
fn soap_flow_sends_the_envelope() {
    let mut cfg = common::config();
    cfg.auth = AuthMethod::Soap;
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    host.push_response(500, &[], b"<soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>x</faultstring></soapenv:Fault>");
    let err = Client::new(&host, cfg).login().expect_err("fault");
    assert!(matches!(err, SfError::Auth { ref error, .. } if error == "INVALID_LOGIN"));
    let req = &host.requests()[0];
    assert_eq!(req.url, "https://login.salesforce.com/services/Soap/u/53.0");
    assert_eq!(req.header_value("soapaction"), Some("login"));
    let body = String::from_utf8(req.body.clone().expect("body")).expect("utf8");
    assert!(body.contains("<n1:username>integration@example.com</n1:username>"));
    assert!(body.contains(&format!(
        "<n1:password>{}{}</n1:password>",
        common::PASSWORD,
        common::SECURITY_TOKEN
    )));
}

#[test]
fn error_kinds_follow_the_model() {
    let cases: &[(u16, &[u8], ErrorKind)] = &[
        (403, br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#, ErrorKind::RateLimited),
        (400, br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#, ErrorKind::Transient),
        (500, br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#, ErrorKind::Transient),
        (503, b"Service Unavailable", ErrorKind::Transient),
        (400, br#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#, ErrorKind::Permanent),
        (403, br#"[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]"#, ErrorKind::Config),
        (404, br#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#, ErrorKind::Permanent),
    ];
    for (status, body, kind) in cases {
        let cfg = common::config();
        let host = common::host_with_session(&cfg, "T");
        host.push_response(*status, &[], body);
        let err = Client::new(&host, cfg)
            .update("Task", "00T000000000001AAA", &json!({"Status":"Completed"}))
            .expect_err("error");
        assert_eq!(err.kind(), *kind, "{status} {err:?}");
        assert_eq!(PluginError::from(err).kind, *kind);
    }
    // Transport errors.
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "T");
    host.push_error(pbx_plugin_sdk::http::HttpError::Timeout);
    let err = Client::new(&host, cfg)
        .delete("Task", "00T000000000001AAA")
        .expect_err("timeout");
    assert_eq!(err.kind(), ErrorKind::Transient);
}

#[test]
fn api_reserve_stops_requests_before_the_limit() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "T");
    host.push_response(
        200,
        &[("Sforce-Limit-Info", "api-usage=14990/15000")],
        br#"{"totalSize":0,"done":true,"records":[]}"#,
    );
    let client = Client::new(&host, cfg.clone());
    client.query::<Value>("SELECT Id FROM Task").expect("first");
    let err = client
        .query::<Value>("SELECT Id FROM Task")
        .expect_err("reserve");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(host.requests().len(), 1, "refused before sending");
    // The usage survives the invocation.
    client.save_usage();
    assert!(host.state_value(USAGE_KEY).is_some());
    let next = Client::new(&host, cfg);
    assert!(next.query::<Value>("SELECT Id FROM Task").is_err());
    assert_eq!(host.requests().len(), 1);
}

#[test]
fn search_accepts_both_envelopes_and_escapes_the_term() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "T");
    host.push_response(
        200,
        &[],
        br#"{"searchRecords":[{"attributes":{"type":"Contact","url":"/x"},"Id":"003000000000001AAA"}]}"#,
    );
    host.push_response(
        200,
        &[],
        br#"[{"attributes":{"type":"Contact","url":"/x"},"Id":"003000000000002AAA"}]"#,
    );
    let client = Client::new(&host, cfg);
    let sosl =
        pbx_salesforce::search::phone_search_sosl("+81 3 1234 5678", "JP", Default::default())
            .expect("sosl");
    assert_eq!(client.search(&sosl).expect("wrapped").len(), 1);
    assert_eq!(client.search(&sosl).expect("bare").len(), 1);
    let url = url::Url::parse(&host.requests()[0].url).expect("url");
    assert_eq!(url.path(), "/services/data/v53.0/search/");
    let q = url
        .query_pairs()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .expect("q");
    assert!(q.starts_with("FIND {\\+81312345678 OR 0312345678}"), "{q}");
}

#[test]
fn describe_and_composite() {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "T");
    host.push_response(
        200,
        &[],
        br#"{"name":"Task","createable":true,"updateable":true,"queryable":true,"fields":[{"name":"CallType","type":"picklist","createable":true,"updateable":true,"picklistValues":[{"value":"Inbound","active":true},{"value":"Outbound","active":true}]}]}"#,
    );
    host.push_response(
        200,
        &[],
        br#"{"compositeResponse":[{"body":{"id":"00T000000000001AAA","success":true,"errors":[]},"httpHeaders":{},"httpStatusCode":201,"referenceId":"task"},{"body":[{"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"case"}]}"#,
    );
    host.push_response(
        200,
        &[],
        br#"[{"id":"00T000000000001AAA","success":true,"errors":[]},{"success":false,"errors":[{"statusCode":"INVALID_EMAIL_ADDRESS","message":"bad","fields":["Email"]}]}]"#,
    );
    let client = Client::new(&host, cfg);
    let d = client.describe("Task").expect("describe");
    let call_type = d.field("calltype").expect("field");
    assert_eq!(call_type.picklist_values.len(), 2);
    let r = client
        .composite(
            true,
            &[pbx_salesforce::CompositeRequest {
                method: "POST".into(),
                url: "/services/data/v53.0/sobjects/Task".into(),
                reference_id: "task".into(),
                body: Some(json!({"Subject":"x"})),
            }],
        )
        .expect("composite");
    assert!(r[0].result().is_ok());
    assert!(
        matches!(r[1].result(), Err(SfError::Validation { code, .. }) if code == "PROCESSING_HALTED")
    );
    let sent: Value =
        serde_json::from_slice(host.requests()[1].body.as_deref().expect("body")).expect("json");
    assert_eq!(sent["compositeRequest"][0]["referenceId"], "task");
    assert_eq!(sent["allOrNone"], true);
    let saves = client
        .collections_create(false, &[json!({"attributes":{"type":"Task"}})])
        .expect("collections");
    assert_eq!(saves[1].errors[0].code, "INVALID_EMAIL_ADDRESS");
}

#[test]
fn sandbox_and_my_domain_hosts() {
    for (login_url, expected) in [
        (None, "https://login.salesforce.com/services/oauth2/token"),
        (
            Some("sandbox"),
            "https://test.salesforce.com/services/oauth2/token",
        ),
        (
            Some("https://acme.my.salesforce.com/"),
            "https://acme.my.salesforce.com/services/oauth2/token",
        ),
    ] {
        let mut cfg: SalesforceConfig = common::config();
        cfg.login_url = login_url.map(str::to_string);
        let host = FakeHost::new();
        common::set_password_secrets(&host);
        host.push_response(200, &[], &common::token_body("T"));
        Client::new(&host, cfg).login().expect("login");
        assert_eq!(host.requests()[0].url, expected);
    }
}

const AUTH_FAILURE: &[u8] =
    br#"{"error":"invalid_grant","error_description":"authentication failure"}"#;

fn soap_fault(code: &str) -> Vec<u8> {
    format!("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: Invalid username, password, security token; or user locked out.</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>").into_bytes()
}

/// The password flow's "authentication failure", then the shared check's SOAP probe answering
/// `probe`: the login item of "verify settings".
fn verify_login_after_auth_failure(
    host: &FakeHost,
    probe: Option<(u16, Vec<u8>)>,
) -> pbx_salesforce::verify::Check {
    host.push_response(400, &[], AUTH_FAILURE);
    if let Some((status, body)) = probe {
        host.push_response(status, &[], &body);
    }
    let client = Client::new(host, common::config());
    let check = pbx_salesforce::verify::login(&client).expect_err("login fails");
    assert_eq!(check.name, "login");
    assert!(!check.ok);
    common::assert_no_secret_leaks(host, std::slice::from_ref(&check.message));
    check
}

#[test]
fn verify_login_names_a_wrong_password() {
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    let check = verify_login_after_auth_failure(&host, Some((500, soap_fault("INVALID_LOGIN"))));
    assert_eq!(check.field.as_deref(), Some("salesforce.password"));
    assert_eq!(
        check.message,
        "login failed: the password of integration@example.com is wrong (or the user name is); set salesforce.password"
    );
    // The probe is a SOAP login() with the password alone, never the token.
    let reqs = host.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].url,
        "https://login.salesforce.com/services/Soap/u/53.0"
    );
    let envelope = String::from_utf8(reqs[1].body.clone().expect("body")).expect("utf-8");
    assert!(envelope.contains(&format!("<n1:password>{}</n1:password>", common::PASSWORD)));
    assert!(!envelope.contains(common::SECURITY_TOKEN));
}

#[test]
fn verify_login_names_a_wrong_security_token() {
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    let check = verify_login_after_auth_failure(
        &host,
        Some((500, soap_fault("LOGIN_MUST_USE_SECURITY_TOKEN"))),
    );
    assert_eq!(check.field.as_deref(), Some("salesforce.security_token"));
    assert!(
        check
            .message
            .contains("the security token is wrong (the password is right)"),
        "{}",
        check.message
    );
    // From a trusted network the password alone logs in: the token set is the wrong one.
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    let ok = br#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><loginResponse><result><serverUrl>https://na15-api.salesforce.com/services/Soap/u/53.0/00D</serverUrl><sessionId>00D!PROBE</sessionId></result></loginResponse></soapenv:Body></soapenv:Envelope>"#;
    let check = verify_login_after_auth_failure(&host, Some((200, ok.to_vec())));
    assert_eq!(check.field.as_deref(), Some("salesforce.security_token"));
    assert!(check.message.contains("this network needs no token"));
    assert!(!check.message.contains("00D!PROBE"));
}

#[test]
fn verify_login_keeps_password_or_token_when_soap_login_is_unavailable() {
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    let check =
        verify_login_after_auth_failure(&host, Some((500, soap_fault("INVALID_OPERATION"))));
    assert_eq!(check.field.as_deref(), Some("salesforce.security_token"));
    assert_eq!(
        check.message,
        "login failed: the password or security token is wrong (Salesforce: authentication failure)"
    );
    // Any other login failure is explained as before, without a probe.
    let host = FakeHost::new();
    common::set_password_secrets(&host);
    host.push_response(
        400,
        &[],
        br#"{"error":"invalid_client_id","error_description":"client identifier invalid"}"#,
    );
    let check =
        pbx_salesforce::verify::login(&Client::new(&host, common::config())).expect_err("refused");
    assert_eq!(check.field.as_deref(), Some("client_id"));
    assert_eq!(host.requests().len(), 1, "no probe");
}
