//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use pbx_plugin_sdk::Host;
use pbx_plugin_sdk::testing::FakeHost;
use pbx_salesforce::client::SESSION_KEY;
use pbx_salesforce::{SalesforceConfig, Session};

pub const INSTANCE: &str = "https://example.my.salesforce.com";

/// The recorded Salesforce responses, carried by the repository in
/// `tests/fixtures/salesforce-recorded/`.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/salesforce-recorded"
    ));
    assert!(
        dir.is_dir(),
        "the recording tests need {}, which the repository carries",
        dir.display()
    );
    dir
}

/// A config for a production org with password auth and the fixtures' API version.
pub fn config() -> SalesforceConfig {
    let mut c = SalesforceConfig::password("integration@example.com", "CONSUMER-KEY");
    c.api_version = Some("v53.0".into());
    c
}

/// A host with a cached session for `cfg` and the password-auth secrets.
pub fn host_with_session(cfg: &SalesforceConfig, token: &str) -> FakeHost {
    let host = FakeHost::new();
    let s = Session {
        access_token: token.into(),
        instance_url: INSTANCE.into(),
        issued_at_ms: 1,
        fingerprint: cfg.session_fingerprint(),
    };
    host.state_set(SESSION_KEY, &serde_json::to_string(&s).expect("json"), None)
        .expect("state");
    set_password_secrets(&host);
    host
}

pub const PASSWORD: &str = "pa55w0rd-SECRET";
pub const SECURITY_TOKEN: &str = "TOKENxyz123";
pub const CLIENT_SECRET: &str = "CLIENT-SECRET-456";

pub fn set_password_secrets(host: &FakeHost) {
    host.set_secret("salesforce.password", PASSWORD);
    host.set_secret("salesforce.security_token", SECURITY_TOKEN);
    host.set_secret("salesforce.client_secret", CLIENT_SECRET);
}

pub fn token_body(token: &str) -> Vec<u8> {
    serde_json::json!({
        "access_token": token,
        "instance_url": INSTANCE,
        "id": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
        "issued_at": "1278448832702",
        "signature": "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ=",
        "token_type": "Bearer",
    })
    .to_string()
    .into_bytes()
}

/// Asserts that no log line, request URL or header value of `host` contains a secret value
/// (request bodies carry them by design).
pub fn assert_no_secret_leaks(host: &FakeHost, texts: &[String]) {
    let secrets = [PASSWORD, SECURITY_TOKEN, CLIENT_SECRET];
    for (_, line) in host.logs() {
        for s in secrets {
            assert!(!line.contains(s), "secret in log line: {line}");
        }
    }
    for t in texts {
        for s in secrets {
            assert!(!t.contains(s), "secret in text: {t}");
        }
    }
    for r in host.requests() {
        for s in secrets {
            assert!(!r.url.contains(s), "secret in URL {}", r.url);
        }
    }
}
