//! Logging in (SPEC A-1, A-2; docs/salesforce-api.md §1): the OAuth username-password, refresh-token
//! and JWT bearer flows, and SOAP partner `login()`.
//!
//! Secret values are read here and go only into request bodies: never into a log line, an
//! error message or a [`Session`] (which holds the access token, kept in plugin state as H-9
//! intends).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pbx_plugin_sdk::Host;
use pbx_plugin_sdk::http::{Method, Request, Response};
use pbx_plugin_sdk::secrets::SecretError;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{
    AuthMethod, SECRET_CLIENT_SECRET, SECRET_PASSWORD, SECRET_PRIVATE_KEY, SECRET_REFRESH_TOKEN,
    SECRET_SECURITY_TOKEN, SalesforceConfig,
};
use crate::error::{OAuthError, SfError, excerpt};

/// A logged-in session, cached in plugin state and reused until Salesforce rejects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The bearer token.
    pub access_token: String,
    /// The org's instance, e.g. `https://na1.salesforce.com` (no trailing slash).
    pub instance_url: String,
    /// When Salesforce issued it (ms since the epoch; the host clock when not reported).
    pub issued_at_ms: i64,
    /// Which settings made it ([`SalesforceConfig::session_fingerprint`]).
    #[serde(default)]
    pub fingerprint: String,
}

/// JWT lifetime: Salesforce accepts `exp` at most 3 minutes ahead.
const JWT_LIFETIME_SECS: i64 = 180;

/// Reads a secret; an unset one is a settings error naming it.
fn secret(host: &impl Host, name: &str) -> Result<String, SfError> {
    match host.secret(name) {
        Ok(v) => Ok(v),
        Err(SecretError::NotSet(_)) => Err(SfError::Config {
            field: name.into(),
            message: "is not set for this tenant".into(),
        }),
        Err(SecretError::Denied(m)) => Err(SfError::Config {
            field: name.into(),
            message: format!("cannot be read ({m}); declare it in plugins.toml"),
        }),
    }
}

/// Reads an optional secret.
fn optional_secret(host: &impl Host, name: &str) -> Result<Option<String>, SfError> {
    match secret(host, name) {
        Ok(v) => Ok(Some(v)),
        Err(SfError::Config { message, .. }) if message.starts_with("is not set") => Ok(None),
        Err(e) => Err(e),
    }
}

/// `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// Builds the signed JWT bearer assertion (RS256) for `sub` = `username`, `iss` = consumer key.
pub fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    now_secs: i64,
    private_key_pem: &str,
) -> Result<String, SfError> {
    let key_err = |m: String| SfError::Config {
        field: SECRET_PRIVATE_KEY.into(),
        message: m,
    };
    let pem = private_key_pem.trim();
    let key = if pem.contains("BEGIN RSA PRIVATE KEY") {
        rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .map_err(|e| key_err(format!("is not a valid PKCS#1 RSA key ({e})")))?
    } else if pem.contains("BEGIN PRIVATE KEY") {
        rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| key_err(format!("is not a valid PKCS#8 RSA key ({e})")))?
    } else {
        return Err(key_err(
            "is not a PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)".into(),
        ));
    };
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": username,
        "aud": audience,
        "exp": now_secs + JWT_LIFETIME_SECS,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signer = SigningKey::<Sha256>::new(key);
    let signature = signer.sign(signing_input.as_bytes());
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

/// The OAuth token response (all flows).
#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    #[serde(default)]
    issued_at: Option<String>,
}

/// Logs in with the tenant's configured method. One HTTP request.
pub fn login(host: &impl Host, cfg: &SalesforceConfig) -> Result<Session, SfError> {
    let base = cfg.login_base()?;
    let timeout = cfg.timeout_ms.unwrap_or(crate::client::DEFAULT_TIMEOUT_MS);
    let mut session = match cfg.auth {
        AuthMethod::Soap => soap_login(host, cfg, &base, timeout, true)?,
        method => {
            let body = match method {
                AuthMethod::Password => {
                    let username = SalesforceConfig::require(&cfg.username, "username")?;
                    let client_id = SalesforceConfig::require(&cfg.client_id, "client_id")?;
                    let mut password = secret(host, SECRET_PASSWORD)?;
                    if let Some(token) = optional_secret(host, SECRET_SECURITY_TOKEN)? {
                        password.push_str(token.trim());
                    }
                    let client_secret = secret(host, SECRET_CLIENT_SECRET)?;
                    form(&[
                        ("grant_type", "password"),
                        ("client_id", client_id),
                        ("client_secret", &client_secret),
                        ("username", username),
                        ("password", &password),
                    ])
                }
                AuthMethod::RefreshToken => {
                    let client_id = SalesforceConfig::require(&cfg.client_id, "client_id")?;
                    let refresh = secret(host, SECRET_REFRESH_TOKEN)?;
                    let client_secret = optional_secret(host, SECRET_CLIENT_SECRET)?;
                    let mut pairs = vec![
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id),
                        ("refresh_token", refresh.as_str()),
                    ];
                    if let Some(s) = client_secret.as_deref() {
                        pairs.push(("client_secret", s));
                    }
                    form(&pairs)
                }
                AuthMethod::Jwt => {
                    let username = SalesforceConfig::require(&cfg.username, "username")?;
                    let client_id = SalesforceConfig::require(&cfg.client_id, "client_id")?;
                    let key = secret(host, SECRET_PRIVATE_KEY)?;
                    let assertion = jwt_assertion(
                        client_id,
                        username,
                        &cfg.audience(),
                        host.now_ms() / 1000,
                        &key,
                    )?;
                    form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &assertion),
                    ])
                }
                AuthMethod::Soap => Vec::new(),
            };
            let req = Request::new(Method::Post, format!("{base}/services/oauth2/token"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .body(body)
                .timeout_ms(timeout);
            let resp = host.http_send(&req)?;
            parse_token_response(&resp, host.now_ms())?
        }
    };
    session.fingerprint = cfg.session_fingerprint();
    Ok(session)
}

/// Parses an OAuth token endpoint answer (200 token or 4xx `{"error",...}`).
pub fn parse_token_response(resp: &Response, now_ms: i64) -> Result<Session, SfError> {
    if resp.is_success() {
        let t: TokenResponse =
            serde_json::from_slice(&resp.body).map_err(|e| SfError::Protocol {
                status: resp.status,
                message: format!("token response: {e}"),
            })?;
        let issued_at_ms = t
            .issued_at
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(now_ms);
        return Ok(Session {
            access_token: t.access_token,
            instance_url: t.instance_url.trim_end_matches('/').to_string(),
            issued_at_ms,
            fingerprint: String::new(),
        });
    }
    // A 5xx is the login service failing, never a verdict on the credentials, whatever its
    // body says (`{"error":"unknown_error",…}` with a 503 during an incident): retry it. As
    // an `Auth` error it would be a `config` failure, and the call logs waiting on this
    // login would be dead-lettered instead of retried (H-8).
    if resp.status >= 500 {
        return Err(SfError::Server {
            status: resp.status,
            message: excerpt(&resp.body),
        });
    }
    match serde_json::from_slice::<OAuthError>(&resp.body) {
        Ok(e) => Err(SfError::Auth {
            error: e.error,
            description: e.error_description,
        }),
        Err(_) => Err(SfError::Protocol {
            status: resp.status,
            message: excerpt(&resp.body),
        }),
    }
}

/// Escapes text for an XML element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Undoes the five predefined XML entities.
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of the first element whose local name is `name` (any namespace prefix).
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let tag_name = tag.split_whitespace().next().unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or("");
        if local == name && !tag.starts_with('/') {
            let body = &rest[end + 1..];
            let close = body.find("</")?;
            return Some(xml_unescape(body[..close].trim()));
        }
    }
    None
}

/// SOAP partner `login()` (docs/salesforce-api.md §1d). `with_token: false` sends the password
/// alone (the probe of [`diagnose_password_failure`]).
fn soap_login(
    host: &impl Host,
    cfg: &SalesforceConfig,
    base: &str,
    timeout: u32,
    with_token: bool,
) -> Result<Session, SfError> {
    let username = SalesforceConfig::require(&cfg.username, "username")?;
    let mut password = secret(host, SECRET_PASSWORD)?;
    if with_token && let Some(token) = optional_secret(host, SECRET_SECURITY_TOKEN)? {
        password.push_str(token.trim());
    }
    let version = cfg.version()?;
    let number = version.trim_start_matches('v');
    let envelope = format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" "#,
            r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
            r#"xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">"#,
            r#"<n1:username>{}</n1:username><n1:password>{}</n1:password>"#,
            r#"</n1:login></env:Body></env:Envelope>"#
        ),
        xml_escape(username),
        xml_escape(&password)
    );
    let req = Request::new(Method::Post, format!("{base}/services/Soap/u/{number}"))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(envelope.into_bytes())
        .timeout_ms(timeout);
    let resp = host.http_send(&req)?;
    parse_soap_login(&resp, host.now_ms())
}

/// Parses a SOAP `loginResponse` or fault.
pub fn parse_soap_login(resp: &Response, now_ms: i64) -> Result<Session, SfError> {
    let xml = String::from_utf8_lossy(&resp.body);
    if let Some(code) = xml_text(&xml, "faultcode") {
        let code = code.rsplit(':').next().unwrap_or(&code).to_string();
        let description = xml_text(&xml, "exceptionMessage")
            .or_else(|| xml_text(&xml, "faultstring"))
            .unwrap_or_default();
        return Err(SfError::Auth {
            error: code,
            description,
        });
    }
    let (Some(session_id), Some(server_url)) =
        (xml_text(&xml, "sessionId"), xml_text(&xml, "serverUrl"))
    else {
        return Err(if resp.status >= 500 {
            SfError::Server {
                status: resp.status,
                message: excerpt(&resp.body),
            }
        } else {
            SfError::Protocol {
                status: resp.status,
                message: format!(
                    "SOAP login response without sessionId: {}",
                    excerpt(&resp.body)
                ),
            }
        });
    };
    let Some(origin) = crate::origin(&server_url) else {
        return Err(SfError::Protocol {
            status: resp.status,
            message: format!("serverUrl {server_url} is not an http(s) URL"),
        });
    };
    // The instance is serverUrl's origin, minus the "-api" some pods add to the host.
    let instance_url = origin.replace("-api.", ".");
    Ok(Session {
        access_token: session_id,
        instance_url,
        issued_at_ms: now_ms,
        fingerprint: String::new(),
    })
}

/// Whether a login failure is the OAuth password flow's `invalid_grant` "authentication
/// failure", which Salesforce answers for a wrong password and a wrong security token alike.
pub fn is_password_or_token_failure(method: AuthMethod, error: &str, description: &str) -> bool {
    method == AuthMethod::Password
        && error == "invalid_grant"
        && description
            .to_ascii_lowercase()
            .contains("authentication failure")
}

/// After the password flow's "authentication failure": which of the password and the security
/// token is wrong. One SOAP `login()` with the password alone (no token): `INVALID_LOGIN` means
/// the password (or the user name) is wrong; `LOGIN_MUST_USE_SECURITY_TOKEN` means the password
/// is right and the token is wrong or missing; a success (a trusted network needs no token)
/// with a token set means the token is wrong. `None` when the probe tells nothing (SOAP login
/// unavailable, another error): the caller keeps "password or security token".
///
/// Returns the secret at fault and the message; no secret value is ever in it.
pub fn diagnose_password_failure(
    host: &impl Host,
    cfg: &SalesforceConfig,
) -> Option<(String, String)> {
    let base = cfg.login_base().ok()?;
    let timeout = cfg.timeout_ms.unwrap_or(crate::client::DEFAULT_TIMEOUT_MS);
    let token_set = host.secret(SECRET_SECURITY_TOKEN).is_ok();
    match soap_login(host, cfg, &base, timeout, false) {
        Err(SfError::Auth { error, .. }) if error == "LOGIN_MUST_USE_SECURITY_TOKEN" => Some((
            SECRET_SECURITY_TOKEN.into(),
            if token_set {
                "login failed: the security token is wrong (the password is right); reset it in Salesforce (Settings > Reset My Security Token) and set salesforce.security_token".into()
            } else {
                "login failed: Salesforce requires a security token from this network; set salesforce.security_token".into()
            },
        )),
        Err(SfError::Auth { error, .. }) if error == "INVALID_LOGIN" => Some((
            SECRET_PASSWORD.into(),
            format!(
                "login failed: the password of {} is wrong (or the user name is); set salesforce.password",
                cfg.username.as_deref().unwrap_or("the user")
            ),
        )),
        Ok(_) if token_set => Some((
            SECRET_SECURITY_TOKEN.into(),
            "login failed: the security token is wrong (the password is right and this network needs no token); correct or remove salesforce.security_token".into(),
        )),
        _ => None,
    }
}

/// A failed login explained for "verify settings" (SPEC A-4, H-11): the setting (or secret) at
/// fault and what to do. For the password flow's "authentication failure" it runs the probe of
/// [`diagnose_password_failure`] (one extra request, only when the login already failed) to
/// name the password or the security token; otherwise [`explain_auth_failure`].
pub fn explain_login_failure(
    host: &impl Host,
    cfg: &SalesforceConfig,
    error: &str,
    description: &str,
) -> (String, String) {
    is_password_or_token_failure(cfg.auth, error, description)
        .then(|| diagnose_password_failure(host, cfg))
        .flatten()
        .unwrap_or_else(|| explain_auth_failure(cfg.auth, error, description))
}

/// A login failure explained for the tenant admin from Salesforce's answer alone: the setting
/// (or secret) at fault and what to do. Used by "verify settings" (SPEC A-4, H-11); prefer
/// [`explain_login_failure`], which also tells a wrong password from a wrong token.
pub fn explain_auth_failure(
    method: AuthMethod,
    error: &str,
    description: &str,
) -> (String, String) {
    let d = description.to_ascii_lowercase();
    let sf = format!("(Salesforce: {description})");
    let (field, what): (&str, String) = match (error, method) {
        ("invalid_client_id", _) => (
            "client_id",
            "the consumer key (client_id) is not known to Salesforce".into(),
        ),
        ("invalid_client", _) => (
            SECRET_CLIENT_SECRET,
            "the consumer secret is wrong".into(),
        ),
        ("unsupported_grant_type", _) => (
            "auth",
            "this login method is not enabled for the connected app".into(),
        ),
        ("invalid_grant", AuthMethod::Password) if d.contains("authentication failure") => (
            SECRET_SECURITY_TOKEN,
            "the password or security token is wrong".into(),
        ),
        ("invalid_grant", AuthMethod::RefreshToken) => (
            SECRET_REFRESH_TOKEN,
            "the refresh token is expired or revoked; authorise the app again".into(),
        ),
        ("invalid_grant", AuthMethod::Jwt) if d.contains("audience") => (
            "login_url",
            "the JWT audience does not match the org (production vs sandbox)".into(),
        ),
        ("invalid_grant", AuthMethod::Jwt) if d.contains("approved") => (
            "username",
            "the user is not pre-authorised for the connected app (approve the profile or permission set)".into(),
        ),
        ("invalid_grant", AuthMethod::Jwt) if d.contains("expired") => (
            "jwt",
            "the JWT was rejected as expired; check the host clock".into(),
        ),
        ("invalid_grant", AuthMethod::Jwt) => (
            SECRET_PRIVATE_KEY,
            "the JWT was rejected: check the private key, the certificate on the connected app and the user name".into(),
        ),
        ("invalid_grant", _) if d.contains("inactive") => {
            ("username", "the Salesforce user is inactive".into())
        }
        ("INVALID_LOGIN", _) => (
            SECRET_SECURITY_TOKEN,
            "the user name, password or security token is wrong".into(),
        ),
        ("LOGIN_MUST_USE_SECURITY_TOKEN", _) => (
            SECRET_SECURITY_TOKEN,
            "a security token is required from this network; set salesforce.security_token".into(),
        ),
        ("API_DISABLED_FOR_ORG" | "API_CURRENTLY_DISABLED", _) => (
            "username",
            "the API is not enabled for this org or user (edition or \"API Enabled\" permission)".into(),
        ),
        ("UNSUPPORTED_API_VERSION", _) => (
            "api_version",
            "the API version is not supported by SOAP login".into(),
        ),
        _ => ("auth", "login was refused".into()),
    };
    (field.to_string(), format!("login failed: {what} {sf}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_finds_prefixed_elements() {
        let xml = r#"<a:Envelope><a:Body><loginResponse><result><serverUrl>https://na1-api.salesforce.com/services/Soap/u/59.0/00D</serverUrl><sessionId>00D!AQ&amp;x</sessionId></result></loginResponse></a:Body></a:Envelope>"#;
        assert_eq!(xml_text(xml, "sessionId").as_deref(), Some("00D!AQ&x"));
        assert_eq!(xml_text(xml, "nothing"), None);
    }

    #[test]
    fn a_5xx_from_the_token_endpoint_is_retried_not_a_login_failure() {
        let resp = |status: u16, body: &str| Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let e = parse_token_response(
            &resp(
                503,
                r#"{"error":"unknown_error","error_description":"retry your request"}"#,
            ),
            0,
        )
        .unwrap_err();
        assert!(matches!(e, SfError::Server { status: 503, .. }), "{e:?}");
        assert_eq!(e.kind(), pbx_plugin_sdk::ErrorKind::Transient);
        let e = parse_token_response(&resp(502, "<html>Bad gateway</html>"), 0).unwrap_err();
        assert_eq!(e.kind(), pbx_plugin_sdk::ErrorKind::Transient);
        // A 400 with an OAuth error is about the credentials: the admin must fix them.
        let e = parse_token_response(
            &resp(
                400,
                r#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
            ),
            0,
        )
        .unwrap_err();
        assert!(matches!(e, SfError::Auth { .. }), "{e:?}");
        assert_eq!(e.kind(), pbx_plugin_sdk::ErrorKind::Config);
    }

    #[test]
    fn explains_common_failures() {
        let (field, msg) = explain_auth_failure(
            AuthMethod::Password,
            "invalid_grant",
            "authentication failure",
        );
        assert_eq!(field, "salesforce.security_token");
        assert_eq!(
            msg,
            "login failed: the password or security token is wrong (Salesforce: authentication failure)"
        );
        let (field, _) = explain_auth_failure(
            AuthMethod::Password,
            "invalid_client_id",
            "client identifier invalid",
        );
        assert_eq!(field, "client_id");
        let (field, _) =
            explain_auth_failure(AuthMethod::Jwt, "invalid_grant", "audience is invalid");
        assert_eq!(field, "login_url");
        let (field, _) = explain_auth_failure(
            AuthMethod::RefreshToken,
            "invalid_grant",
            "expired access/refresh token",
        );
        assert_eq!(field, "salesforce.refresh_token");
    }
}
