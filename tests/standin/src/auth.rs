//! OAuth 2.0 token endpoint (docs/salesforce-api.md §1a–1c, errors §1e): username-password,
//! refresh-token and JWT bearer flows; plus token revocation and the identity URL.
//!
//! Accounting: token requests count as API calls of the org they resolve to, failures
//! included. Whether they count in the real service is [UNCONFIRMED] (§4); counting them
//! keeps the stand-in's figures conservative, so a plugin that fits its API budget here fits
//! it in production too. They are never refused for an exhausted allocation.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::Utc;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use sha2::Sha256;

use crate::faults::Scope;
use crate::http::{FaultEffect, Shared, Style, apply_fault, drop_connection, json_http};
use crate::json::J;
use crate::org::Org;

/// Clock skew Salesforce allows on `exp` (§1b).
const EXP_GRACE_SECONDS: i64 = 180;

/// An OAuth error body `{"error":…,"error_description":…}` (§1e; `Cache-Control: no-store`).
pub(crate) fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json_http(
        status,
        &J::obj([
            ("error", J::str(error)),
            ("error_description", J::str(description)),
        ]),
        "no-store",
    )
}

struct OAuthError {
    status: u16,
    error: &'static str,
    description: &'static str,
}

const fn err(error: &'static str, description: &'static str) -> OAuthError {
    OAuthError {
        status: 400,
        error,
        description,
    }
}

const AUTH_FAILURE: OAuthError = err("invalid_grant", "authentication failure");
const BAD_CLIENT_ID: OAuthError = err("invalid_client_id", "client identifier invalid");
const BAD_CLIENT: OAuthError = err("invalid_client", "invalid client credentials");
const NOT_APPROVED: OAuthError = err("invalid_grant", "user hasn't approved this consumer");
const BAD_AUDIENCE: OAuthError = err("invalid_grant", "audience is invalid");
const EXPIRED_JWT: OAuthError = err("invalid_grant", "expired authorization code");
const BAD_REFRESH: OAuthError = err("invalid_grant", "expired access/refresh token");
const INACTIVE: OAuthError = err("invalid_grant", "inactive user");
const UNSUPPORTED: OAuthError = err("unsupported_grant_type", "grant type not supported");
/// A JWT that cannot be read or whose signature does not verify against the connected
/// app's certificate. (One report, salesforce.stackexchange 53662, saw `invalid_client` for a
/// badly encoded signature; `invalid_grant`/"invalid assertion" is the commonly reported text.)
const BAD_ASSERTION: OAuthError = err("invalid_grant", "invalid assertion");

type Form = Vec<(String, String)>;

fn param<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Decoded JWT parts (unverified).
struct Jwt {
    header: Value,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .ok()
}

fn decode_jwt(assertion: &str) -> Option<Jwt> {
    let mut parts = assertion.trim().split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(Jwt {
        header: serde_json::from_slice(&b64url(h)?).ok()?,
        claims: serde_json::from_slice(&b64url(c)?).ok()?,
        signing_input: format!("{h}.{c}"),
        signature: b64url(s)?,
    })
}

/// The username of a JWT: `prn` (legacy) wins over `sub` when both are present (§1b).
fn jwt_subject(claims: &Value) -> Option<&str> {
    claims
        .get("prn")
        .and_then(Value::as_str)
        .or_else(|| claims.get("sub").and_then(Value::as_str))
}

fn public_key(pem: &str) -> Option<rsa::RsaPublicKey> {
    rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .ok()
        .or_else(|| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()).ok())
}

fn verify_rs256(pem: &str, jwt: &Jwt) -> bool {
    let Some(key) = public_key(pem) else {
        tracing::warn!(
            "sf-standin: jwt_public_key_pem is not an RSA public key PEM (SPKI or PKCS#1)"
        );
        return false;
    };
    let Ok(sig) = Signature::try_from(jwt.signature.as_slice()) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key)
        .verify(jwt.signing_input.as_bytes(), &sig)
        .is_ok()
}

/// Which org a token request is about (for faults and accounting).
fn resolve_org(sh: &Shared, form: &Form) -> Option<Org> {
    let grant = param(form, "grant_type").unwrap_or("");
    let by_user = |u: Option<&str>| u.and_then(|u| sh.org_by_username(u));
    let by_client = |c: Option<&str>| c.and_then(|c| sh.org_by_client_id(c));
    match grant {
        "password" => {
            by_user(param(form, "username")).or_else(|| by_client(param(form, "client_id")))
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let jwt = param(form, "assertion").and_then(decode_jwt)?;
            by_user(jwt_subject(&jwt.claims))
                .or_else(|| by_client(jwt.claims.get("iss").and_then(Value::as_str)))
        }
        _ => by_client(param(form, "client_id")),
    }
}

fn user_active(org: &Org) -> bool {
    org.get("User", &org.login_user_id())
        .is_some_and(|u| u.get("IsActive") != Some(&Value::Bool(false)))
}

fn signature(secret: &str, id: &str, issued_at: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn identity_url(base: &str, org: &Org) -> String {
    format!("{base}/id/{}/{}", org.inner.id, org.login_user_id())
}

/// Response of the password and refresh-token flows (§1a, §1c).
fn full_token_response(base: &str, org: &Org) -> J {
    let token = org.issue_session();
    let id = identity_url(base, org);
    let issued_at = Utc::now().timestamp_millis().to_string();
    let sig = signature(&org.inner.spec.client_secret, &id, &issued_at);
    J::obj([
        ("id", J::Str(id)),
        ("issued_at", J::Str(issued_at)),
        ("instance_url", J::str(base)),
        ("signature", J::Str(sig)),
        ("access_token", J::Str(token)),
        ("token_type", J::str("Bearer")),
        ("scope", J::str("web api")),
    ])
}

fn password_flow(sh: &Shared, form: &Form) -> Result<J, OAuthError> {
    let client_id = param(form, "client_id").unwrap_or("");
    let org = match param(form, "username").and_then(|u| sh.org_by_username(u)) {
        Some(org) if org.inner.spec.client_id == client_id => org,
        // The connected app is unknown to the user's org (or the user is unknown): the app
        // is checked first.
        Some(_) => return Err(BAD_CLIENT_ID),
        None => {
            let org = sh.org_by_client_id(client_id).ok_or(BAD_CLIENT_ID)?;
            if param(form, "client_secret") != Some(org.inner.spec.client_secret.as_str()) {
                return Err(BAD_CLIENT);
            }
            return Err(AUTH_FAILURE);
        }
    };
    let spec = &org.inner.spec;
    if param(form, "client_secret") != Some(spec.client_secret.as_str()) {
        return Err(BAD_CLIENT);
    }
    // Password with the security token appended; a wrong token and a wrong password are
    // indistinguishable, as in Salesforce.
    let expected = format!("{}{}", spec.password, spec.security_token);
    if param(form, "password") != Some(expected.as_str()) {
        return Err(AUTH_FAILURE);
    }
    if !user_active(&org) {
        return Err(INACTIVE);
    }
    Ok(full_token_response(&sh.base_url, &org))
}

fn refresh_flow(sh: &Shared, form: &Form) -> Result<J, OAuthError> {
    let org = param(form, "client_id")
        .and_then(|c| sh.org_by_client_id(c))
        .ok_or(BAD_CLIENT_ID)?;
    // The secret is optional for this flow, but a wrong one is rejected.
    if let Some(secret) = param(form, "client_secret")
        && secret != org.inner.spec.client_secret
    {
        return Err(BAD_CLIENT);
    }
    let token = param(form, "refresh_token").unwrap_or("");
    if !org.data().refresh_tokens.iter().any(|t| t == token) {
        return Err(BAD_REFRESH);
    }
    if !user_active(&org) {
        return Err(INACTIVE);
    }
    Ok(full_token_response(&sh.base_url, &org))
}

fn claim_i64(claims: &Value, name: &str) -> Option<i64> {
    match claims.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn jwt_flow(sh: &Shared, form: &Form) -> Result<J, OAuthError> {
    let jwt = param(form, "assertion")
        .and_then(decode_jwt)
        .ok_or(BAD_ASSERTION)?;
    if jwt.header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(BAD_ASSERTION);
    }
    let org = jwt
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .and_then(|i| sh.org_by_client_id(i))
        .ok_or(BAD_CLIENT_ID)?;
    let spec = &org.inner.spec;
    let pem = spec.jwt_public_key_pem.as_deref().ok_or(BAD_ASSERTION)?;
    if !verify_rs256(pem, &jwt) {
        return Err(BAD_ASSERTION);
    }
    let want_aud = if spec.sandbox {
        "https://test.salesforce.com"
    } else {
        "https://login.salesforce.com"
    };
    let aud_ok = match jwt.claims.get("aud") {
        Some(Value::String(a)) => a == want_aud,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want_aud)),
        _ => false,
    };
    if !aud_ok {
        return Err(BAD_AUDIENCE);
    }
    let exp = claim_i64(&jwt.claims, "exp").ok_or(BAD_ASSERTION)?;
    if Utc::now().timestamp() > exp + EXP_GRACE_SECONDS {
        return Err(EXPIRED_JWT);
    }
    let user = jwt_subject(&jwt.claims).unwrap_or("");
    let approved = user.eq_ignore_ascii_case(&spec.username)
        && spec
            .jwt_preauthorized_users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(user));
    if !approved {
        return Err(NOT_APPROVED);
    }
    if !user_active(&org) {
        return Err(INACTIVE);
    }
    let token = org.issue_session();
    // §1b: no refresh token, no signature.
    Ok(J::obj([
        ("access_token", J::Str(token)),
        ("scope", J::str("web api")),
        ("instance_url", J::str(&sh.base_url)),
        ("id", J::Str(identity_url(&sh.base_url, &org))),
        ("token_type", J::str("Bearer")),
    ]))
}

/// `POST /services/oauth2/token`. Parameters come form-encoded in the body; some clients
/// put them in the query string, which Salesforce also accepts.
pub(crate) async fn token(State(sh): State<Arc<Shared>>, uri: Uri, body: Bytes) -> Response {
    let mut form: Form = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.extend(
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    let org = resolve_org(&sh, &form);
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.to_string());
    if let Some(org) = &org {
        let fault = org.take_fault("POST", &path, Scope::CompositeRequest);
        match apply_fault(&sh, org, fault, Style::OAuth, None).await {
            FaultEffect::Proceed => {}
            FaultEffect::Drop => {
                org.log("POST", &path, 0, false);
                return drop_connection();
            }
            FaultEffect::Respond(r) => {
                org.log("POST", &path, r.status().as_u16(), false);
                return r;
            }
        }
    }
    let result = match param(&form, "grant_type") {
        Some("password") => password_flow(&sh, &form),
        Some("refresh_token") => refresh_flow(&sh, &form),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => jwt_flow(&sh, &form),
        _ => Err(UNSUPPORTED),
    };
    let resp = match result {
        Ok(body) => json_http(200, &body, "no-cache,no-store"),
        Err(e) => oauth_error(e.status, e.error, e.description),
    };
    if let Some(org) = &org {
        org.charge_login();
        org.log("POST", &path, resp.status().as_u16(), true);
    }
    resp
}

/// `POST /services/oauth2/revoke` (`token=` an access or refresh token).
pub(crate) async fn revoke(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: Form = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let token = param(&form, "token").unwrap_or("");
    if let Some(org) = sh.org_by_token(token) {
        org.end_session(token);
    }
    for org in sh.all_orgs() {
        org.revoke_refresh_token(token);
    }
    json_http(200, &J::Obj(Vec::new()), "no-cache,no-store")
}

/// `GET /id/{orgId}/{userId}`: the identity URL returned as `id` by the token endpoint.
pub(crate) async fn identity(
    State(sh): State<Arc<Shared>>,
    Path((org_id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_default();
    let org = sh.org_by_token(&token).filter(|o| o.inner.id == org_id);
    let Some(org) = org.filter(|o| o.check_session(&token).is_some()) else {
        return json_http(403, &J::str("Bad_OAuth_Token"), "no-store");
    };
    let Some(user) = org.get("User", &user_id) else {
        return json_http(404, &J::str("Bad_Id"), "no-store");
    };
    let s = |k: &str| J::from(user.get(k).cloned().unwrap_or(Value::Null));
    let base = &sh.base_url;
    let v = crate::rest::LATEST_VERSION;
    let body = J::obj([
        ("id", J::Str(identity_url(base, &org))),
        ("asserted_user", J::Bool(true)),
        ("user_id", J::str(&user_id)),
        ("organization_id", J::str(&org.inner.id)),
        ("username", s("Username")),
        ("nick_name", s("Alias")),
        ("display_name", s("Name")),
        ("email", s("Email")),
        ("active", s("IsActive")),
        ("user_type", J::str("STANDARD")),
        ("language", J::str("ja")),
        ("locale", J::str("ja_JP")),
        ("utcOffset", J::int(32_400_000)),
        (
            "urls",
            J::obj([
                (
                    "rest",
                    J::Str(format!("{base}/services/data/v{{version}}/")),
                ),
                (
                    "sobjects",
                    J::Str(format!("{base}/services/data/v{{version}}/sobjects/")),
                ),
                (
                    "search",
                    J::Str(format!("{base}/services/data/v{{version}}/search/")),
                ),
                (
                    "query",
                    J::Str(format!("{base}/services/data/v{{version}}/query/")),
                ),
                (
                    "partner",
                    J::Str(format!(
                        "{base}/services/Soap/u/{{version}}/{}",
                        &org.inner.id[..15]
                    )),
                ),
                ("profile", J::Str(format!("{base}/{user_id}"))),
                ("custom_domain", J::str(base)),
                ("latest_version", J::Str(format!("{v}.0"))),
            ]),
        ),
        ("is_app_installed", J::Bool(true)),
    ]);
    json_http(200, &body, "no-cache,no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_signature_is_base64_sha256() {
        let s = signature("secret", "https://x/id/00D/005", "1278448832702");
        assert_eq!(STANDARD.decode(&s).map(|b| b.len()).ok(), Some(32));
    }

    #[test]
    fn subject_prefers_prn() {
        let c = serde_json::json!({"sub": "a@x", "prn": "b@x"});
        assert_eq!(jwt_subject(&c), Some("b@x"));
        let c = serde_json::json!({"sub": "a@x"});
        assert_eq!(jwt_subject(&c), Some("a@x"));
    }

    #[test]
    fn exp_as_number_or_string() {
        let c = serde_json::json!({"exp": "1700000000"});
        assert_eq!(claim_i64(&c, "exp"), Some(1_700_000_000));
        let c = serde_json::json!({"exp": 1_700_000_000});
        assert_eq!(claim_i64(&c, "exp"), Some(1_700_000_000));
    }
}
