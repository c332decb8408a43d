//! The typed error model of Salesforce answers (docs/salesforce-api.md §1e, §3) and its mapping to
//! the WIT `plugin-error` kinds, which decide whether the host retries, pauses or gives up.

use pbx_plugin_sdk::PluginError;
use pbx_plugin_sdk::http;
use serde::Deserialize;

/// One entry of Salesforce's REST error array: `[{"message","errorCode","fields"}]`. In
/// collection save results the code is named `statusCode`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    #[serde(alias = "statusCode", rename = "errorCode", default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// The OAuth error body: `{"error","error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

/// What went wrong talking to Salesforce.
#[derive(Debug, Clone, PartialEq)]
pub enum SfError {
    /// The session is expired or invalid (`INVALID_SESSION_ID`, HTTP 401) even after one
    /// renewal.
    Session(String),
    /// The org's API allocation or concurrency limit (`REQUEST_LIMIT_EXCEEDED`), or this
    /// library's own reserve before it ([`crate::ApiUsage`]).
    RequestLimit(String),
    /// `UNABLE_TO_LOCK_ROW`: someone else is editing the record; retry later.
    LockRow(String),
    /// Salesforce rejected the data or the query (400: INVALID_FIELD, MALFORMED_QUERY,
    /// REQUIRED_FIELD_MISSING, MALFORMED_ID, a restricted picklist value, …).
    Validation {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    /// 404: no such record or resource (`NOT_FOUND`, `ENTITY_IS_DELETED`).
    NotFound { code: String, message: String },
    /// 403 other than limits: the integration user lacks a permission, or the API is disabled
    /// for the org or edition (`INSUFFICIENT_ACCESS…`, `API_DISABLED_FOR_ORG`, …).
    Forbidden { code: String, message: String },
    /// Login refused (OAuth `error`/`error_description`, or the SOAP fault code and string).
    Auth { error: String, description: String },
    /// The tenant's settings or secrets are missing or malformed (a PEM key that does not
    /// parse, an unknown auth method). The text names the setting.
    Config { field: String, message: String },
    /// No response (timeout, connection trouble, host refusal).
    Transport(http::Error),
    /// A 5xx from Salesforce.
    Server { status: u16, message: String },
    /// A response this library does not understand (a body that does not parse, an
    /// unexpected status).
    Protocol { status: u16, message: String },
}

impl std::fmt::Display for SfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SfError::Session(m) => write!(f, "Salesforce session invalid: {m}"),
            SfError::RequestLimit(m) => write!(f, "Salesforce API limit reached: {m}"),
            SfError::LockRow(m) => write!(f, "Salesforce record locked: {m}"),
            SfError::Validation {
                code,
                message,
                fields,
                ..
            } => {
                write!(f, "Salesforce rejected the request: {code}: {message}")?;
                if !fields.is_empty() {
                    write!(f, " (fields: {})", fields.join(", "))?;
                }
                Ok(())
            }
            SfError::NotFound { code, message } => {
                write!(f, "Salesforce: not found: {code}: {message}")
            }
            SfError::Forbidden { code, message } => {
                write!(f, "Salesforce refused access: {code}: {message}")
            }
            SfError::Auth { error, description } => {
                write!(f, "Salesforce login failed: {error}: {description}")
            }
            SfError::Config { field, message } => write!(f, "setting {field}: {message}"),
            SfError::Transport(e) => write!(f, "Salesforce unreachable: {e}"),
            SfError::Server { status, message } => {
                write!(f, "Salesforce server error (HTTP {status}): {message}")
            }
            SfError::Protocol { status, message } => {
                write!(
                    f,
                    "unexpected Salesforce response (HTTP {status}): {message}"
                )
            }
        }
    }
}

impl std::error::Error for SfError {}

impl SfError {
    /// This failure of a create, as the plugin's error. Without a response (timeout, lost
    /// connection) Salesforce may still carry the create out after the plugin gave up; the
    /// retry, which looks the record up before it creates one, must not come before Salesforce
    /// is surely done, or it misses the record and creates a second one: it waits three
    /// request timeouts.
    pub fn of_create(self, cfg: &crate::SalesforceConfig) -> PluginError {
        let outcome_unknown = self.outcome_unknown();
        let pe = PluginError::from(self);
        if !outcome_unknown {
            return pe;
        }
        let wait = crate::create_once::settle_window_ms(cfg);
        pe.retry_after_ms(u32::try_from(wait).unwrap_or(u32::MAX))
    }

    /// Whether a write that failed this way may still have been carried out by Salesforce
    /// (no answer came). An answered failure, or a request that never left, did nothing.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, SfError::Transport(e) if e.may_have_reached_the_server())
    }

    /// The WIT error kind: retry what may heal (5xx, locks, transport, a session that could
    /// not be renewed), pause the tenant on API limits, give up on rejected data, and report
    /// settings problems as `config` so the admin sees them.
    pub fn kind(&self) -> pbx_plugin_sdk::ErrorKind {
        use pbx_plugin_sdk::ErrorKind as K;
        match self {
            SfError::Session(_) | SfError::LockRow(_) | SfError::Server { .. } => K::Transient,
            SfError::Transport(e) => PluginError::from(e.clone()).kind,
            SfError::RequestLimit(_) => K::RateLimited,
            SfError::Validation { .. } | SfError::NotFound { .. } | SfError::Protocol { .. } => {
                K::Permanent
            }
            SfError::Auth { .. } | SfError::Config { .. } | SfError::Forbidden { .. } => K::Config,
        }
    }

    /// Whether this is `INVALID_SESSION_ID` (renew the session and retry once).
    pub fn is_session(&self) -> bool {
        matches!(self, SfError::Session(_))
    }

    /// Builds the error for a non-2xx REST response from its status and body.
    pub fn from_response(status: u16, body: &[u8]) -> SfError {
        let errors: Option<Vec<ApiError>> = serde_json::from_slice(body).ok();
        let first = errors.and_then(|e| e.into_iter().next());
        let text = || excerpt(body);
        match first {
            Some(e) => from_api_error(status, e),
            None => match status {
                401 => SfError::Session(text()),
                404 => SfError::NotFound {
                    code: String::new(),
                    message: text(),
                },
                500..=599 => SfError::Server {
                    status,
                    message: text(),
                },
                _ => SfError::Protocol {
                    status,
                    message: text(),
                },
            },
        }
    }
}

/// Classifies one REST error entry.
pub fn from_api_error(status: u16, e: ApiError) -> SfError {
    match e.code.as_str() {
        // A session that works but not for REST (a SOAP-only session, API disabled for the
        // user): renewing will not help, the admin must fix the user's permissions.
        "INVALID_SESSION_ID" if e.message.contains("not valid for use with the REST API") => {
            SfError::Forbidden {
                code: e.code,
                message: e.message,
            }
        }
        "INVALID_SESSION_ID" => SfError::Session(e.message),
        "REQUEST_LIMIT_EXCEEDED" => SfError::RequestLimit(e.message),
        "UNABLE_TO_LOCK_ROW" => SfError::LockRow(e.message),
        "NOT_FOUND" | "ENTITY_IS_DELETED" => SfError::NotFound {
            code: e.code,
            message: e.message,
        },
        _ if status == 401 => SfError::Session(e.message),
        _ if status == 403 => SfError::Forbidden {
            code: e.code,
            message: e.message,
        },
        _ if status == 404 => SfError::NotFound {
            code: e.code,
            message: e.message,
        },
        _ if status >= 500 => SfError::Server {
            status,
            message: format!("{}: {}", e.code, e.message),
        },
        _ => SfError::Validation {
            status,
            code: e.code,
            message: e.message,
            fields: e.fields,
        },
    }
}

/// Longest body excerpt kept in an error: enough to identify it in the log.
const EXCERPT: usize = 300;

pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

impl From<http::Error> for SfError {
    fn from(e: http::Error) -> Self {
        SfError::Transport(e)
    }
}

impl From<pbx_plugin_sdk::http::HttpError> for SfError {
    fn from(e: pbx_plugin_sdk::http::HttpError) -> Self {
        SfError::Transport(e.into())
    }
}

impl From<SfError> for PluginError {
    fn from(e: SfError) -> Self {
        PluginError::new(e.kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SalesforceConfig;

    #[test]
    fn a_create_without_a_response_waits_three_timeouts_before_its_retry() {
        let mut cfg = SalesforceConfig::password("u", "c");
        cfg.timeout_ms = Some(1500);
        let lost = SfError::Transport(http::Error::Timeout).of_create(&cfg);
        assert_eq!(lost.retry_after_ms, Some(4500));
        assert_eq!(lost.kind, pbx_plugin_sdk::ErrorKind::Transient);
        let refused = SfError::Server {
            status: 503,
            message: "down".into(),
        }
        .of_create(&cfg);
        assert_eq!(
            refused.retry_after_ms, None,
            "a 5xx answered: nothing was created"
        );
        let not_sent = SfError::Transport(http::Error::Connect(format!(
            "{}connection refused",
            http::NOT_SENT_PREFIX
        )));
        assert!(!not_sent.outcome_unknown());
        assert_eq!(not_sent.of_create(&cfg).retry_after_ms, None);
        let broken = SfError::Transport(http::Error::Connect("connection reset".into()));
        assert!(broken.outcome_unknown(), "a reset after sending: unknown");
    }
}
