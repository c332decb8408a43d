//! The Salesforce part of a tenant's plugin settings, and the secret names the library reads.
//!
//! Settings (`ctx.config`, JSON) never hold secrets; those come from the `secrets` interface
//! under the names below, which every plugin using this library declares in `plugins.toml`.

use serde::Deserialize;

use crate::SfError;

/// Secret: the integration user's password (password and SOAP auth).
pub const SECRET_PASSWORD: &str = "salesforce.password";
/// Secret: the user's security token, appended to the password (password and SOAP auth).
/// Optional: orgs that trust the host's IP range do not need it.
pub const SECRET_SECURITY_TOKEN: &str = "salesforce.security_token";
/// Secret: the connected app's consumer secret (password and refresh-token auth; optional for
/// refresh-token auth when the app does not require it).
pub const SECRET_CLIENT_SECRET: &str = "salesforce.client_secret";
/// Secret: the OAuth refresh token (refresh-token auth).
pub const SECRET_REFRESH_TOKEN: &str = "salesforce.refresh_token";
/// Secret: the PEM RSA private key whose certificate is uploaded to the connected app (JWT
/// bearer auth). PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub const SECRET_PRIVATE_KEY: &str = "salesforce.private_key";

/// Every secret name this library may read, for `plugins.toml`.
pub const ALL_SECRETS: &[&str] = &[
    SECRET_PASSWORD,
    SECRET_SECURITY_TOKEN,
    SECRET_CLIENT_SECRET,
    SECRET_REFRESH_TOKEN,
    SECRET_PRIVATE_KEY,
];

/// Production login host.
pub const PRODUCTION_LOGIN_URL: &str = "https://login.salesforce.com";
/// Sandbox login host.
pub const SANDBOX_LOGIN_URL: &str = "https://test.salesforce.com";
/// API version used when the tenant does not set one (SPEC A-5).
pub const DEFAULT_API_VERSION: &str = "v59.0";

/// How the plugin logs in (SPEC A-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// OAuth username-password flow: `username`, `client_id`, secrets `salesforce.password`,
    /// `salesforce.security_token`, `salesforce.client_secret`.
    #[default]
    Password,
    /// SOAP partner `login()`: `username`, secrets `salesforce.password`,
    /// `salesforce.security_token`. For orgs without a connected app; retired by Salesforce
    /// in Summer '27.
    Soap,
    /// OAuth refresh-token flow: `client_id`, secrets `salesforce.refresh_token` and
    /// (optionally) `salesforce.client_secret`.
    RefreshToken,
    /// JWT bearer flow: `client_id` (consumer key), `username`, secret
    /// `salesforce.private_key`.
    Jwt,
}

impl AuthMethod {
    /// The settings value ("password", "soap", "refresh_token", "jwt").
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Soap => "soap",
            AuthMethod::RefreshToken => "refresh_token",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// The tenant settings this library reads. Plugins embed it in their own settings with
/// `#[serde(flatten)]`, so the keys below sit at the top level of `ctx.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SalesforceConfig {
    /// Login host: absent or "production" for `https://login.salesforce.com`, "sandbox" for
    /// `https://test.salesforce.com`, or a My Domain URL (`https://acme.my.salesforce.com`).
    #[serde(default)]
    pub login_url: Option<String>,
    /// See [`AuthMethod`]; default "password".
    #[serde(default)]
    pub auth: AuthMethod,
    /// The integration user's login name (password, SOAP, JWT).
    #[serde(default)]
    pub username: Option<String>,
    /// The connected app's consumer key (password, refresh-token, JWT).
    #[serde(default)]
    pub client_id: Option<String>,
    /// REST API version, "v59.0" or "59.0"; default [`DEFAULT_API_VERSION`].
    #[serde(default)]
    pub api_version: Option<String>,
    /// JWT `aud`: default `https://test.salesforce.com` for sandboxes, else
    /// `https://login.salesforce.com`.
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// Per-request timeout in milliseconds; default 10 000.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Percentage of the daily API allocation to keep in reserve: once usage reaches
    /// `100 - api_reserve_percent` %, requests fail as rate-limited before being sent
    /// (SPEC A-6). Default 5; 0 disables.
    #[serde(default)]
    pub api_reserve_percent: Option<u8>,
}

impl SalesforceConfig {
    /// A production config with password auth (for tests and examples).
    pub fn password(username: &str, client_id: &str) -> Self {
        SalesforceConfig {
            login_url: None,
            auth: AuthMethod::Password,
            username: Some(username.into()),
            client_id: Some(client_id.into()),
            api_version: None,
            jwt_audience: None,
            timeout_ms: None,
            api_reserve_percent: None,
        }
    }

    /// The login base URL, without a trailing slash.
    pub fn login_base(&self) -> Result<String, SfError> {
        let raw = self.login_url.as_deref().map(str::trim).unwrap_or("");
        let url = match raw.to_ascii_lowercase().as_str() {
            "" | "production" | "login" => PRODUCTION_LOGIN_URL.to_string(),
            "sandbox" | "test" => SANDBOX_LOGIN_URL.to_string(),
            _ => raw.trim_end_matches('/').to_string(),
        };
        if crate::origin(&url).is_none() {
            return Err(SfError::Config {
                field: "login_url".into(),
                message: format!(
                    "\"{url}\" is not a URL; use \"production\", \"sandbox\" or https://<domain>.my.salesforce.com"
                ),
            });
        }
        Ok(url)
    }

    /// Whether the login host is a sandbox (test.salesforce.com or a `.sandbox.` My Domain).
    pub fn is_sandbox(&self) -> bool {
        self.login_base().is_ok_and(|u| {
            let u = u.to_ascii_lowercase();
            u.starts_with(SANDBOX_LOGIN_URL) || u.contains(".sandbox.")
        })
    }

    /// The JWT audience.
    pub fn audience(&self) -> String {
        match &self.jwt_audience {
            Some(a) if !a.trim().is_empty() => a.trim().to_string(),
            _ if self.is_sandbox() => SANDBOX_LOGIN_URL.to_string(),
            _ => PRODUCTION_LOGIN_URL.to_string(),
        }
    }

    /// The API version as "vNN.N".
    pub fn version(&self) -> Result<String, SfError> {
        let raw = self
            .api_version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_API_VERSION);
        let number = raw.strip_prefix('v').unwrap_or(raw);
        let valid = number.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        });
        if !valid {
            return Err(SfError::Config {
                field: "api_version".into(),
                message: format!("\"{raw}\" is not an API version like \"v59.0\""),
            });
        }
        Ok(format!("v{number}"))
    }

    /// A required text setting.
    pub(crate) fn require<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, SfError> {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(SfError::Config {
                field: field.into(),
                message: "is required for this login method".into(),
            }),
        }
    }

    /// A fingerprint of the settings a session depends on: a cached session made with other
    /// settings (another user or org) must not be reused.
    pub fn session_fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.auth.as_str(),
            self.login_base().unwrap_or_default(),
            self.username.as_deref().unwrap_or(""),
            self.client_id.as_deref().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> SalesforceConfig {
        pbx_plugin_sdk::config::parse_str(json).expect("config")
    }

    #[test]
    fn login_hosts() {
        assert_eq!(cfg("{}").login_base().expect("url"), PRODUCTION_LOGIN_URL);
        assert_eq!(
            cfg(r#"{"login_url":"sandbox"}"#).login_base().expect("url"),
            SANDBOX_LOGIN_URL
        );
        assert_eq!(
            cfg(r#"{"login_url":"https://acme.my.salesforce.com/"}"#)
                .login_base()
                .expect("url"),
            "https://acme.my.salesforce.com"
        );
        assert!(cfg(r#"{"login_url":"sandbox"}"#).is_sandbox());
        assert!(cfg(r#"{"login_url":"https://acme--dev.sandbox.my.salesforce.com"}"#).is_sandbox());
        assert!(!cfg("{}").is_sandbox());
        let e = cfg(r#"{"login_url":"not a url"}"#)
            .login_base()
            .expect_err("bad");
        assert!(matches!(e, SfError::Config { ref field, .. } if field == "login_url"));
    }

    #[test]
    fn audience_follows_login_host() {
        assert_eq!(cfg("{}").audience(), PRODUCTION_LOGIN_URL);
        assert_eq!(cfg(r#"{"login_url":"test"}"#).audience(), SANDBOX_LOGIN_URL);
        assert_eq!(
            cfg(r#"{"login_url":"https://acme.my.salesforce.com"}"#).audience(),
            PRODUCTION_LOGIN_URL
        );
        assert_eq!(
            cfg(r#"{"jwt_audience":"https://community.example.com"}"#).audience(),
            "https://community.example.com"
        );
    }

    #[test]
    fn api_versions() {
        assert_eq!(cfg("{}").version().expect("v"), "v59.0");
        assert_eq!(
            cfg(r#"{"api_version":"45.0"}"#).version().expect("v"),
            "v45.0"
        );
        assert_eq!(
            cfg(r#"{"api_version":"v51.0"}"#).version().expect("v"),
            "v51.0"
        );
        assert!(cfg(r#"{"api_version":"latest"}"#).version().is_err());
        assert!(cfg(r#"{"api_version":"v59"}"#).version().is_err());
    }

    #[test]
    fn auth_methods_parse() {
        assert_eq!(cfg(r#"{"auth":"jwt"}"#).auth, AuthMethod::Jwt);
        assert_eq!(
            cfg(r#"{"auth":"refresh_token"}"#).auth,
            AuthMethod::RefreshToken
        );
        assert_eq!(cfg(r#"{"auth":"soap"}"#).auth, AuthMethod::Soap);
        assert_eq!(cfg("{}").auth, AuthMethod::Password);
        let e = pbx_plugin_sdk::config::parse_str::<SalesforceConfig>(r#"{"auth":"magic"}"#)
            .expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("auth"));
    }
}
