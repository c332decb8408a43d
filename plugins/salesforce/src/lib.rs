//! The guest-side Salesforce library shared by the PBX's Salesforce plugins.
//!
//! It carries the protocol so each plugin stays small (docs/adr/):
//!
//! * [`auth`]: the three login methods of SPEC A-1 (OAuth username-password with the security
//!   token appended, or SOAP partner `login()`; refresh token; JWT bearer signed RS256 with
//!   `rsa` + `sha2`, no C code), production / sandbox / My Domain hosts;
//! * [`Client`]: the session cached in plugin state and reused, renewed once on
//!   `INVALID_SESSION_ID` with the request retried once, a configurable API version
//!   `Sforce-Limit-Info` tracking with a reserve, query with paging, SOSL search,
//!   create / update / get / delete / describe, composite and collections;
//! * [`SfError`]: the typed error model and its mapping to the WIT `plugin-error` kinds;
//! * [`matching`]: the caller-matching rules of L-1 on top of `pbx-phone` (L-2);
//! * [`search`]: SOSL/SOQL escaping and the caller look-up query.
//!
//! All HTTP goes through the SDK's [`pbx_plugin_sdk::Host`] trait, so everything here runs
//! natively in unit tests against `FakeHost` with canned (recorded) responses.
//!
//! Settings keys: see [`SalesforceConfig`]. Secret names (declare them in `plugins.toml`): see
//! [`config::ALL_SECRETS`].

pub mod auth;
pub mod client;
pub mod config;
pub mod create_once;
pub mod error;
pub mod limits;
pub mod matching;
pub mod search;
pub mod verify;

/// `scheme://authority` of an absolute http(s) URL, without path, query or fragment; `None`
/// for anything else. (A full URL parser would cost the component its IDNA tables.)
pub(crate) fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let valid = !authority.is_empty()
        && !authority.starts_with(':')
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'));
    valid.then(|| format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

pub use auth::Session;
pub use client::{
    Client, CompositeEnvelope, CompositeRequest, CompositeResponse, DeletedRecord, DeletedResult,
    Describe, GraphResult, QueryResult, SaveResult,
};
pub use config::{AuthMethod, SalesforceConfig};
pub use error::{ApiError, SfError};
pub use limits::ApiUsage;
pub use matching::{Candidate, Match, RecordKind};

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        use super::origin;
        assert_eq!(
            origin("https://Acme.my.salesforce.com/x?y").as_deref(),
            Some("https://acme.my.salesforce.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("ftp://x"), None);
        assert_eq!(origin("https://"), None);
        assert_eq!(origin("not a url"), None);
        assert_eq!(origin("https://a b"), None);
    }
}
