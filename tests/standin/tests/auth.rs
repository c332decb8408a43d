//! Authentication (docs/salesforce-api.md §1): the three OAuth flows with every error of §1e,
//! SOAP login() with its success envelope and faults, sessions expiring, and the API
//! permission switches.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use sf_standin::OrgSpec;
use sha2::Sha256;

const KEY: &str = include_str!("data/jwt_test_key.pem");
const KEY_SPKI: &str = include_str!("data/jwt_test_key.pub.pem");
const KEY_PKCS1: &str = include_str!("data/jwt_test_key.pkcs1.pub.pem");
const OTHER_KEY: &str = include_str!("data/jwt_other_key.pem");
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn jwt_with(private_pem: &str, header: &Value, claims: &Value) -> String {
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(private_pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(private_pem))
        .expect("test key");
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{h}.{c}");
    let sk = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);
    let sig = sk.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn jwt(claims: &Value) -> String {
    jwt_with(KEY, &json!({"alg": "RS256"}), claims)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jwt_spec(pem: &str) -> OrgSpec {
    OrgSpec {
        jwt_public_key_pem: Some(pem.to_string()),
        ..OrgSpec::default()
    }
}

fn claims(e: &Env) -> Value {
    let s = e.org.spec();
    json!({"iss": s.client_id, "sub": s.username, "aud": "https://login.salesforce.com", "exp": now() + 120})
}

fn assert_oauth_error(r: &Resp, error: &str, description: &str) {
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"error": error, "error_description": description})
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json;charset=UTF-8")
    );
}

async fn password_login(e: &Env) -> Resp {
    let s = e.org.spec();
    let pw = format!("{}{}", s.password, s.security_token);
    e.token(&[
        ("grant_type", "password"),
        ("client_id", &s.client_id),
        ("client_secret", &s.client_secret),
        ("username", &s.username),
        ("password", &pw),
    ])
    .await
}

#[tokio::test]
async fn password_flow_succeeds_with_the_documented_shape() {
    let e = env().await;
    let r = password_login(&e).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut keys: Vec<&String> = r.body.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "access_token",
            "id",
            "instance_url",
            "issued_at",
            "scope",
            "signature",
            "token_type"
        ]
    );
    let spec = e.org.spec();
    let id = r.body["id"].as_str().expect("id");
    assert_eq!(
        id,
        format!("{}/id/{}/{}", e.base, e.org.id(), e.org.login_user_id())
    );
    assert_eq!(r.body["instance_url"], json!(e.base));
    assert_eq!(r.body["token_type"], json!("Bearer"));
    let issued_at = r.body["issued_at"].as_str().expect("issued_at is a string");
    assert!(
        issued_at.len() == 13 && issued_at.chars().all(|c| c.is_ascii_digit()),
        "ms: {issued_at}"
    );
    let token = r.body["access_token"].as_str().expect("token");
    assert!(
        token.starts_with(&format!("{}!AR", &e.org.id()[..15])),
        "{token}"
    );
    // signature = Base64(HMAC-SHA256(client_secret, id + issued_at)) (§1a)
    let mut mac = Hmac::<Sha256>::new_from_slice(spec.client_secret.as_bytes()).expect("hmac");
    mac.update(format!("{id}{issued_at}").as_bytes());
    assert_eq!(
        r.body["signature"],
        json!(STANDARD.encode(mac.finalize().into_bytes()))
    );
    // The token works against the REST API of the instance URL.
    let limits = e
        .send_with(
            reqwest::Method::GET,
            &e.data("limits/"),
            None,
            Some(token),
            &[],
        )
        .await;
    assert_eq!(limits.status, 200);
    // The identity URL answers for the token.
    let ident = e
        .send_with(
            reqwest::Method::GET,
            &id.replace(&e.base, ""),
            None,
            Some(token),
            &[],
        )
        .await;
    assert_eq!(ident.status, 200);
    assert_eq!(ident.body["username"], json!(spec.username));
}

#[tokio::test]
async fn password_flow_errors() {
    let e = env().await;
    let s = e.org.spec();
    let good_pw = format!("{}{}", s.password, s.security_token);
    let login = |client_id: String, secret: String, user: String, pw: String| {
        let e = &e;
        async move {
            e.token(&[
                ("grant_type", "password"),
                ("client_id", &client_id),
                ("client_secret", &secret),
                ("username", &user),
                ("password", &pw),
            ])
            .await
        }
    };
    // Wrong password and wrong token look the same (§1e).
    let r = login(
        s.client_id.clone(),
        s.client_secret.clone(),
        s.username.clone(),
        format!("wrong{}", s.security_token),
    )
    .await;
    assert_oauth_error(&r, "invalid_grant", "authentication failure");
    let r = login(
        s.client_id.clone(),
        s.client_secret.clone(),
        s.username.clone(),
        format!("{}WRONGTOKEN", s.password),
    )
    .await;
    assert_oauth_error(&r, "invalid_grant", "authentication failure");
    let r = login(
        s.client_id.clone(),
        s.client_secret.clone(),
        s.username.clone(),
        s.password.clone(),
    )
    .await;
    assert_oauth_error(&r, "invalid_grant", "authentication failure");
    let r = login(
        s.client_id.clone(),
        s.client_secret.clone(),
        "nobody@example.com".into(),
        good_pw.clone(),
    )
    .await;
    assert_oauth_error(&r, "invalid_grant", "authentication failure");
    let r = login(
        "3MVG9unknown".into(),
        s.client_secret.clone(),
        s.username.clone(),
        good_pw.clone(),
    )
    .await;
    assert_oauth_error(&r, "invalid_client_id", "client identifier invalid");
    let r = login(
        s.client_id.clone(),
        "bad-secret".into(),
        s.username.clone(),
        good_pw.clone(),
    )
    .await;
    assert_oauth_error(&r, "invalid_client", "invalid client credentials");
    let r = e.token(&[("grant_type", "client_credentials")]).await;
    assert_oauth_error(&r, "unsupported_grant_type", "grant type not supported");
    let r = e.token(&[]).await;
    assert_oauth_error(&r, "unsupported_grant_type", "grant type not supported");
    // An inactive user.
    e.org
        .update("User", &e.org.login_user_id(), json!({"IsActive": false}));
    let r = login(
        s.client_id.clone(),
        s.client_secret.clone(),
        s.username.clone(),
        good_pw,
    )
    .await;
    assert_oauth_error(&r, "invalid_grant", "inactive user");
}

#[tokio::test]
async fn token_requests_count_as_api_calls() {
    let e = env().await;
    assert_eq!(e.org.api_calls(), 0);
    password_login(&e).await;
    let s = e.org.spec();
    e.token(&[
        ("grant_type", "password"),
        ("client_id", &s.client_id),
        ("username", &s.username),
        ("password", "x"),
    ])
    .await;
    assert_eq!(
        e.org.api_calls(),
        2,
        "successful and failed token requests both count"
    );
    let log = e.org.request_log();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|l| l.counted && l.path == "/services/oauth2/token")
    );
    assert_eq!(log[0].status, 200);
    assert_eq!(log[1].status, 400);
}

#[tokio::test]
async fn refresh_token_flow() {
    let e = env().await;
    let s = e.org.spec();
    let rt = s.refresh_tokens[0].clone();
    let r = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &s.client_id),
            ("client_secret", &s.client_secret),
            ("refresh_token", &rt),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for k in [
        "id",
        "issued_at",
        "instance_url",
        "signature",
        "access_token",
        "token_type",
        "scope",
    ] {
        assert!(r.body.get(k).is_some(), "missing {k}");
    }
    assert!(
        r.body.get("refresh_token").is_none(),
        "no rotation by default"
    );
    // The secret is optional.
    let r = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &s.client_id),
            ("refresh_token", &rt),
        ])
        .await;
    assert_eq!(r.status, 200);
    let r = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &s.client_id),
            ("client_secret", "nope"),
            ("refresh_token", &rt),
        ])
        .await;
    assert_oauth_error(&r, "invalid_client", "invalid client credentials");
    let r = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "3MVG9nope"),
            ("refresh_token", &rt),
        ])
        .await;
    assert_oauth_error(&r, "invalid_client_id", "client identifier invalid");
    let r = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &s.client_id),
            ("refresh_token", "5Aep861bogus"),
        ])
        .await;
    assert_oauth_error(&r, "invalid_grant", "expired access/refresh token");
    e.org.revoke_refresh_token(&rt);
    let r = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &s.client_id),
            ("refresh_token", &rt),
        ])
        .await;
    assert_oauth_error(&r, "invalid_grant", "expired access/refresh token");
}

#[tokio::test]
async fn jwt_flow_with_spki_and_pkcs1_keys() {
    for pem in [KEY_SPKI, KEY_PKCS1] {
        let e = env_with(jwt_spec(pem)).await;
        let r = e
            .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&claims(&e)))])
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let mut keys: Vec<&String> = r.body.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            vec!["access_token", "id", "instance_url", "scope", "token_type"],
            "§1b shape"
        );
        let token = r.body["access_token"].as_str().expect("token");
        let q = e
            .send_with(
                reqwest::Method::GET,
                &e.data("limits"),
                None,
                Some(token),
                &[],
            )
            .await;
        assert_eq!(q.status, 200);
    }
}

#[tokio::test]
async fn jwt_claim_variants() {
    let e = env_with(jwt_spec(KEY_SPKI)).await;
    let s = e.org.spec();
    // exp as a string, as simple-salesforce sends it; aud as an array.
    let c = json!({"iss": s.client_id, "sub": s.username, "aud": ["https://login.salesforce.com"], "exp": (now() + 60).to_string()});
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&c))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // prn wins over sub.
    let c = json!({"iss": s.client_id, "sub": "someone@else.example", "prn": s.username, "aud": "https://login.salesforce.com", "exp": now() + 60});
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&c))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = json!({"iss": s.client_id, "sub": s.username, "prn": "someone@else.example", "aud": "https://login.salesforce.com", "exp": now() + 60});
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&c))])
        .await;
    assert_oauth_error(&r, "invalid_grant", "user hasn't approved this consumer");
    // Within the 3-minute grace.
    let c = json!({"iss": s.client_id, "sub": s.username, "aud": "https://login.salesforce.com", "exp": now() - 100});
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&c))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn jwt_errors() {
    let e = env_with(jwt_spec(KEY_SPKI)).await;
    let s = e.org.spec();
    let base = claims(&e);
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            jwt(&with("aud", json!("https://test.salesforce.com"))),
            "invalid_grant",
            "audience is invalid",
        ),
        (
            jwt(&with("aud", json!("https://example.com"))),
            "invalid_grant",
            "audience is invalid",
        ),
        (
            jwt(&with("exp", json!(now() - 200))),
            "invalid_grant",
            "expired authorization code",
        ),
        (
            jwt(&with("sub", json!("stranger@example.com"))),
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        (
            jwt(&with("iss", json!("3MVG9unknown"))),
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            jwt_with(OTHER_KEY, &json!({"alg": "RS256"}), &base),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            jwt_with(KEY, &json!({"alg": "HS256"}), &base),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            "not.a.jwt".to_string(),
            "invalid_grant",
            "invalid assertion",
        ),
        ("garbage".to_string(), "invalid_grant", "invalid assertion"),
    ];
    for (assertion, error, description) in cases {
        let r = e
            .token(&[("grant_type", JWT_GRANT), ("assertion", &assertion)])
            .await;
        assert_oauth_error(&r, error, description);
    }
    // A tampered payload fails the signature.
    let good = jwt(&base);
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(with("exp", json!(now() + 100_000)).to_string());
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &parts.join("."))])
        .await;
    assert_oauth_error(&r, "invalid_grant", "invalid assertion");
    // A user not pre-authorised.
    let e2 = env_with(OrgSpec {
        jwt_preauthorized_users: vec![],
        ..jwt_spec(KEY_SPKI)
    })
    .await;
    let r = e2
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&claims(&e2)))])
        .await;
    assert_oauth_error(&r, "invalid_grant", "user hasn't approved this consumer");
    let _ = s;
}

#[tokio::test]
async fn jwt_audience_follows_the_sandbox_flag() {
    let e = env_with(OrgSpec {
        sandbox: true,
        ..jwt_spec(KEY_SPKI)
    })
    .await;
    let mut c = claims(&e);
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&c))])
        .await;
    assert_oauth_error(&r, "invalid_grant", "audience is invalid");
    c["aud"] = json!("https://test.salesforce.com");
    let r = e
        .token(&[("grant_type", JWT_GRANT), ("assertion", &jwt(&c))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn sessions_expire_after_inactivity_and_on_demand() {
    let e = env_with(OrgSpec {
        session_seconds: 1,
        ..OrgSpec::default()
    })
    .await;
    assert_eq!(e.get(&e.data("limits")).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = e.get(&e.data("limits")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );

    let e = env().await;
    let fresh = password_login(&e).await.body["access_token"]
        .as_str()
        .expect("t")
        .to_string();
    e.org.expire_sessions();
    for t in [e.token.clone(), fresh] {
        let r = e
            .send_with(reqwest::Method::GET, &e.data("limits"), None, Some(&t), &[])
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(r.error_code().as_deref(), Some("INVALID_SESSION_ID"));
    }
    // Not counted, but logged.
    assert_eq!(e.org.api_calls(), 1, "only the login counted");
    assert!(
        e.org
            .request_log()
            .iter()
            .any(|l| l.status == 401 && !l.counted)
    );
}

#[tokio::test]
async fn bad_authorization_headers() {
    let e = env().await;
    let path = e.data("limits");
    let r = e
        .send_with(reqwest::Method::GET, &path, None, None, &[])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code().as_deref(), Some("INVALID_SESSION_ID"));
    let r = e
        .send_with(
            reqwest::Method::GET,
            &path,
            None,
            None,
            &[("Authorization", "Basic dXNlcjpwdw==")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code().as_deref(), Some("INVALID_AUTH_HEADER"));
    let r = e
        .send_with(
            reqwest::Method::GET,
            &path,
            None,
            Some("00Dgarbage!AR.x"),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    // "OAuth <token>" is accepted like Bearer.
    let r = e
        .send_with(
            reqwest::Method::GET,
            &path,
            None,
            None,
            &[("Authorization", &format!("OAuth {}", e.token))],
        )
        .await;
    assert_eq!(r.status, 200);
    // A token of one org is useless in another.
    let other = e.sf.add_org(OrgSpec::default());
    let t = other.issue_session();
    other.expire_sessions();
    let r = e
        .send_with(reqwest::Method::GET, &path, None, Some(&t), &[])
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn api_disabled_still_logs_in() {
    let e = env_with(OrgSpec {
        api_enabled: false,
        ..OrgSpec::default()
    })
    .await;
    let r = password_login(&e).await;
    assert_eq!(r.status, 200, "the login itself works");
    let token = r.body["access_token"].as_str().expect("token");
    let q = e
        .send_with(
            reqwest::Method::GET,
            &e.data("query?q=SELECT+Id+FROM+Account"),
            None,
            Some(token),
            &[],
        )
        .await;
    assert_eq!(q.status, 403);
    assert_eq!(
        q.body,
        json!([{"message": "API is not enabled for this Organization or Partner", "errorCode": "API_DISABLED_FOR_ORG"}])
    );

    let e = env_with(OrgSpec {
        rest_api_available: false,
        ..OrgSpec::default()
    })
    .await;
    let q = e.get(&e.data("sobjects")).await;
    assert_eq!(q.status, 403);
    assert_eq!(q.error_code().as_deref(), Some("API_DISABLED_FOR_ORG"));
    assert_eq!(
        q.error_message().as_deref(),
        Some("The REST API is not enabled for this Organization.")
    );
}

async fn soap_login(
    e: &Env,
    version: &str,
    username: &str,
    password: &str,
) -> (u16, String, Option<String>) {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>{username}</n1:username><n1:password>{password}</n1:password></n1:login></env:Body></env:Envelope>"#
    );
    let r = e
        .http
        .post(format!("{}/services/Soap/u/{version}", e.base))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(body)
        .send()
        .await
        .expect("soap request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.text().await.expect("text"), ct)
}

fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

#[tokio::test]
async fn soap_login_success() {
    let e = env().await;
    let s = e.org.spec();
    let (status, xml, ct) = soap_login(
        &e,
        "58.0",
        &s.username,
        &format!("{}{}", s.password, s.security_token),
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(ct.as_deref(), Some("text/xml;charset=UTF-8"));
    assert!(xml.contains("<loginResponse><result>"));
    let server_url = xml_value(&xml, "serverUrl").expect("serverUrl");
    assert_eq!(
        server_url,
        format!("{}/services/Soap/u/58.0/{}", e.base, &e.org.id()[..15])
    );
    assert_eq!(xml_value(&xml, "organizationId"), Some(e.org.id()));
    assert_eq!(xml_value(&xml, "sessionSecondsValid"), Some("7200".into()));
    assert_eq!(xml_value(&xml, "userName"), Some(s.username.clone()));
    assert_eq!(
        xml_value(&xml, "orgHasPersonAccounts"),
        Some("false".into())
    );
    for tag in [
        "metadataServerUrl",
        "passwordExpired",
        "sandbox",
        "userId",
        "userEmail",
        "userFullName",
    ] {
        assert!(xml_value(&xml, tag).is_some(), "missing {tag}");
    }
    // The session id is a bearer token for REST.
    let sid = xml_value(&xml, "sessionId").expect("sessionId");
    let r = e
        .send_with(
            reqwest::Method::GET,
            &e.data("limits"),
            None,
            Some(&sid),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(e.org.api_calls(), 2, "login and the REST call");
}

#[tokio::test]
async fn soap_login_faults() {
    let e = env().await;
    let s = e.org.spec();
    let (status, xml, _) = soap_login(&e, "58.0", &s.username, "wrong").await;
    assert_eq!(status, 500);
    assert!(
        xml.contains("<faultcode>sf:INVALID_LOGIN</faultcode>"),
        "{xml}"
    );
    assert!(xml.contains("<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>"));
    assert!(xml.contains(r#"<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"#));
    assert!(xml.contains(r#"xmlns:sf="urn:fault.partner.soap.sforce.com""#));
    let (status, xml, _) = soap_login(&e, "58.0", "nobody@example.com", "x").await;
    assert_eq!(status, 500);
    assert!(xml.contains("sf:INVALID_LOGIN"));
    let (_, xml, _) = soap_login(&e, "58.0", &s.username, &s.password).await;
    assert!(xml.contains("sf:LOGIN_MUST_USE_SECURITY_TOKEN"), "{xml}");
    let good = format!("{}{}", s.password, s.security_token);
    let (status, xml, _) = soap_login(&e, "30.0", &s.username, &good).await;
    assert_eq!(status, 500);
    assert!(xml.contains("sf:UNSUPPORTED_API_VERSION"), "{xml}");
    let (status, xml, _) = soap_login(&e, "65.0", &s.username, &good).await;
    assert_eq!(status, 500);
    assert!(xml.contains("sf:INVALID_OPERATION"), "{xml}");
}

#[tokio::test]
async fn versions_resource_is_free_and_retired_versions_are_gone() {
    let e = env().await;
    let r = e
        .send_with(reqwest::Method::GET, "/services/data/", None, None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("sforce-limit-info").is_none(),
        "§4: the versions URI does not count"
    );
    let list = r.body.as_array().expect("array");
    assert!(list.contains(
        &json!({"label": "Winter '19", "url": "/services/data/v44.0", "version": "44.0"})
    ));
    assert!(list.iter().all(|v| {
        v["version"]
            .as_str()
            .is_some_and(|s| s.parse::<f64>().is_ok_and(|n| n >= 31.0))
    }));
    assert_eq!(e.org.api_calls(), 0);

    let r = e.get("/services/data/v30.0/limits").await;
    assert_eq!(r.status, 410);
    assert_eq!(r.error_code().as_deref(), Some("GONE"));
    let r = e
        .get("/services/data/v21.0/query?q=SELECT+Id+FROM+Account")
        .await;
    assert_eq!(r.status, 410);
    let r = e.get("/services/data/v99.0/limits").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code().as_deref(), Some("NOT_FOUND"));
    let r = e.get("/services/data/v45.0/limits").await;
    assert_eq!(r.status, 200, "seed products use v45.0 and v51.0");
}
