//! SPEC A-1..A-6 through the real host and real components (`ivr-greeting`, `case-creation`)
//! against the Salesforce stand-in: login methods, sandbox, session reuse and renewal,
//! "verify settings" naming the wrong field, API version, daily-limit back-off.

use pbx_e2e::{TestEnv, standin};
use serde_json::{Value, json};
use sf_standin::{Org, OrgSpec, StandIn};

const TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.ivr-greeting]
component = "@PLUGINS@/ivr_greeting.wasm"
[plugins.ivr-greeting.grants]
http = ["https://login.salesforce.com", "https://test.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret", "salesforce.refresh_token", "salesforce.private_key"]
state = true
contacts = "read"
[plugins.ivr-greeting.limits]
cpu_ms = 1000
memory_mib = 32
wall_ms = 5000

[plugins.case-creation]
component = "@PLUGINS@/case_creation.wasm"
events = ["queue-entered", "ended"]
[plugins.case-creation.grants]
http = ["https://login.salesforce.com", "https://test.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret", "salesforce.refresh_token", "salesforce.private_key"]
state = true
contacts = "read"
[plugins.case-creation.limits]
cpu_ms = 1000
memory_mib = 32
wall_ms = 20000

[tenants.acme]
default_country = "JP"
ivr_fallback = { speech = "FALLBACK", route = "queue:fallback" }
[tenants.acme.plugins.ivr-greeting]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", queue = "queue:reception" }
[tenants.acme.plugins.case-creation]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT" }
"#;

const PUBLIC_KEY: &str = include_str!("data/jwt-test-key.pub.pem");
const PRIVATE_KEY: &str = include_str!("data/jwt-test-key.pem");

fn spec(user: &str, client: &str) -> OrgSpec {
    OrgSpec {
        username: user.into(),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: client.into(),
        client_secret: "client-secret-1".into(),
        ..OrgSpec::default()
    }
}

async fn start() -> (StandIn, TestEnv) {
    let sf = standin().await;
    let env = TestEnv::start(TOML, &sf.base_url()).await;
    (sf, env)
}

/// Sets the plugin's config (Salesforce part) and the password-flow secrets.
async fn configure(env: &TestEnv, sf: &StandIn, plugin: &str, cfg: Value) {
    let mut full = json!({"login_url": sf.base_url(), "queue": "queue:reception"});
    if plugin == "case-creation" {
        full = json!({"login_url": sf.base_url()});
    }
    if let (Some(f), Some(c)) = (full.as_object_mut(), cfg.as_object()) {
        for (k, v) in c {
            f.insert(k.clone(), v.clone());
        }
    }
    env.host.set_config("acme", plugin, full).expect("config");
}

async fn password_secrets(env: &TestEnv, plugin: &str) {
    for (name, value) in [
        ("salesforce.password", "pw-secret-1"),
        ("salesforce.security_token", "TOKENSECRET"),
        ("salesforce.client_secret", "client-secret-1"),
    ] {
        env.set_secret("acme", plugin, name, value).await;
    }
}

async fn verify(env: &TestEnv, plugin: &str) -> Value {
    let (status, v) = env
        .post(
            &format!("/v1/tenants/acme/plugins/{plugin}/verify"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The failed items of a verify answer.
fn failures(v: &Value) -> Vec<Value> {
    v["items"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["ok"] == false).cloned().collect())
        .unwrap_or_default()
}

fn logins(org: &Org) -> usize {
    org.request_log()
        .iter()
        .filter(|r| r.path.contains("/services/oauth2/token") || r.path.contains("/services/Soap/"))
        .count()
}

async fn ivr(env: &TestEnv, caller: &str) -> Value {
    let (status, d) = env
        .post(
            "/v1/ivr",
            &json!({"tenant": "acme", "deadline_ms": 3000,
                    "call": {"call_id": "a-1", "direction": "inbound", "caller": caller,
                             "callee": "0501111222", "dial_started_at": 0}}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_password_and_security_token() {
    let (sf, env) = start().await;
    let org = sf.add_org(spec("admin@acme.example", "ACME_CLIENT"));
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "password", "username": "admin@acme.example", "client_id": "ACME_CLIENT"}),
    )
    .await;
    password_secrets(&env, "case-creation").await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["items"][0]["name"], "login");
    let log = org.request_log();
    assert_eq!(log[0].path, "/services/oauth2/token", "{log:?}");
    assert_eq!(log[0].status, 200);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_soap_login() {
    let (sf, env) = start().await;
    let org = sf.add_org(spec("admin@acme.example", "ACME_CLIENT"));
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "soap", "username": "admin@acme.example"}),
    )
    .await;
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.password",
        "pw-secret-1",
    )
    .await;
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.security_token",
        "TOKENSECRET",
    )
    .await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], true, "{v}");
    let log = org.request_log();
    assert!(log[0].path.starts_with("/services/Soap/u/"), "{log:?}");
    assert!(log.iter().all(|r| !r.path.contains("oauth2")), "{log:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_refresh_token_flow() {
    let (sf, env) = start().await;
    let org = sf.add_org(OrgSpec {
        refresh_tokens: vec!["5Aep861-refresh-acme".into()],
        ..spec("admin@acme.example", "ACME_CLIENT")
    });
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "refresh_token", "client_id": "ACME_CLIENT"}),
    )
    .await;
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.refresh_token",
        "5Aep861-refresh-acme",
    )
    .await;
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.client_secret",
        "client-secret-1",
    )
    .await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(org.request_log()[0].path, "/services/oauth2/token");
    // A revoked refresh token is named.
    org.revoke_refresh_token("5Aep861-refresh-acme");
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(failures(&v)[0]["field"], "salesforce.refresh_token", "{v}");
    assert!(
        !v.to_string().contains("5Aep861"),
        "no secret in the answer"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_jwt_bearer_flow() {
    let (sf, env) = start().await;
    let org = sf.add_org(OrgSpec {
        jwt_public_key_pem: Some(PUBLIC_KEY.into()),
        jwt_preauthorized_users: vec!["admin@acme.example".into()],
        ..spec("admin@acme.example", "ACME_CLIENT")
    });
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "jwt", "username": "admin@acme.example", "client_id": "ACME_CLIENT"}),
    )
    .await;
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.private_key",
        PRIVATE_KEY,
    )
    .await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(logins(&org), 1);
    // And a real event through the JWT session.
    org.insert(
        "Contact",
        json!({"LastName": "Yamada", "Phone": "0312345678"}),
    );
    let (status, _) = env
        .post("/v1/events", &json!({"tenant": "acme", "event_id": "j1", "kind": "queue-entered",
            "call": {"call_id": "j1", "direction": "inbound", "caller": "0312345678", "callee": "0501111222", "dial_started_at": 0, "queue": "support"}}))
        .await;
    assert_eq!(status, 202);
    env.wait_idle().await;
    assert_eq!(
        org.records("Case").len(),
        1,
        "{:#?}",
        env.log_lines("acme").await
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_sandbox_login_host() {
    let (sf, env) = start().await;
    let org = sf.add_org(OrgSpec {
        sandbox: true,
        jwt_public_key_pem: Some(PUBLIC_KEY.into()),
        jwt_preauthorized_users: vec!["admin@acme.example.dev".into()],
        ..spec("admin@acme.example.dev", "ACME_SANDBOX_APP")
    });
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.private_key",
        PRIVATE_KEY,
    )
    .await;
    // The login host here is the stand-in (an explicit URL), so the audience defaults to
    // production: a sandbox refuses it, and verify names the setting.
    configure(&env, &sf, "case-creation", json!({"auth": "jwt", "username": "admin@acme.example.dev", "client_id": "ACME_SANDBOX_APP"})).await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(failures(&v)[0]["field"], "login_url", "{v}");
    assert!(
        failures(&v)[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("sandbox"),
        "{v}"
    );
    // With the sandbox audience (what login_url = "sandbox" implies for
    // https://test.salesforce.com, set explicitly because the host is the stand-in) it works.
    configure(&env, &sf, "case-creation", json!({"auth": "jwt", "username": "admin@acme.example.dev", "client_id": "ACME_SANDBOX_APP", "jwt_audience": "https://test.salesforce.com"})).await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        org.request_log()
            .iter()
            .any(|r| r.path == "/services/oauth2/token" && r.status == 200)
    );
    // login_url "sandbox" means https://test.salesforce.com: the plugin goes there (which is
    // unreachable from the test machine), not to production.
    configure(&env, &sf, "case-creation", json!({"login_url": "sandbox", "auth": "jwt", "username": "admin@acme.example.dev", "client_id": "ACME_SANDBOX_APP"})).await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(v["ok"], false, "{v}");
    let log = env.log_lines("acme").await;
    let http_lines: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("salesforce.com"))
        .collect();
    assert!(
        http_lines.iter().any(|l| l.contains("test.salesforce.com"))
            && !http_lines
                .iter()
                .any(|l| l.contains("login.salesforce.com")),
        "{v}\n{log:#?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a3_session_reused_and_renewed_once_on_invalid_session() {
    let (sf, env) = start().await;
    let org = sf.add_org(spec("admin@acme.example", "ACME_CLIENT"));
    password_secrets(&env, "ivr-greeting").await;
    org.insert(
        "Account",
        json!({"Name": "CDF 株式会社", "Phone": "0312345678"}),
    );
    for _ in 0..3 {
        assert_eq!(ivr(&env, "0312345678").await["source"], "plugin");
    }
    assert_eq!(
        logins(&org),
        1,
        "one login, reused: {:?}",
        org.request_log()
    );
    org.expire_sessions();
    let before = org.request_log().len();
    let d = ivr(&env, "0312345678").await;
    assert_eq!(d["source"], "plugin", "{d}");
    assert_eq!(logins(&org), 2, "exactly one new login");
    let after: Vec<(String, u16)> = org.request_log()[before..]
        .iter()
        .map(|r| {
            (
                if r.path.contains("/search") {
                    "search".to_string()
                } else {
                    r.path.clone()
                },
                r.status,
            )
        })
        .collect();
    assert_eq!(
        after,
        vec![
            ("search".to_string(), 401),
            ("/services/oauth2/token".to_string(), 200),
            ("search".to_string(), 200)
        ]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_verify_settings_names_the_wrong_field() {
    let (sf, env) = start().await;
    let base =
        json!({"auth": "password", "username": "admin@acme.example", "client_id": "ACME_CLIENT"});
    let org = sf.add_org(spec("admin@acme.example", "ACME_CLIENT"));
    configure(&env, &sf, "case-creation", base.clone()).await;
    password_secrets(&env, "case-creation").await;
    assert_eq!(verify(&env, "case-creation").await["ok"], true);

    // (what is wrong, field expected, words the message must carry)
    let first_failure = |v: &Value| failures(v).first().cloned().unwrap_or(Value::Null);

    // Wrong password, then wrong security token, for both plugins: Salesforce's password
    // flow answers "authentication failure" for either; the shared check's SOAP login()
    // without the token tells them apart (INVALID_LOGIN vs LOGIN_MUST_USE_SECURITY_TOKEN).
    configure(&env, &sf, "ivr-greeting", base.clone()).await;
    password_secrets(&env, "ivr-greeting").await;
    assert_eq!(verify(&env, "ivr-greeting").await["ok"], true);
    for plugin in ["case-creation", "ivr-greeting"] {
        env.set_secret("acme", plugin, "salesforce.password", "bad-pw")
            .await;
        let v = verify(&env, plugin).await;
        let f = first_failure(&v);
        assert_eq!(f["name"], "login", "{plugin}: {v}");
        assert_eq!(f["field"], "salesforce.password", "{plugin}: {v}");
        assert!(
            f["message"]
                .as_str()
                .unwrap_or("")
                .contains("password of admin@acme.example is wrong"),
            "{plugin}: {v}"
        );
        env.set_secret("acme", plugin, "salesforce.password", "pw-secret-1")
            .await;

        // Wrong security token (seed 000: "the security token is invalid").
        env.set_secret("acme", plugin, "salesforce.security_token", "BADTOKEN")
            .await;
        let v = verify(&env, plugin).await;
        let f = first_failure(&v);
        assert_eq!(f["name"], "login", "{plugin}: {v}");
        assert_eq!(f["field"], "salesforce.security_token", "{plugin}: {v}");
        assert!(
            f["message"]
                .as_str()
                .unwrap_or("")
                .contains("security token is wrong (the password is right)"),
            "{plugin}: {v}"
        );
        let text = v.to_string();
        for secret in ["bad-pw", "BADTOKEN", "pw-secret-1", "client-secret-1"] {
            assert!(!text.contains(secret), "{plugin}: secret in {v}");
        }
        env.set_secret("acme", plugin, "salesforce.security_token", "TOKENSECRET")
            .await;
        assert_eq!(verify(&env, plugin).await["ok"], true, "{plugin}");
    }

    // Wrong client id.
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "password", "username": "admin@acme.example", "client_id": "NOT_AN_APP"}),
    )
    .await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(first_failure(&v)["field"], "client_id", "{v}");
    configure(&env, &sf, "case-creation", base.clone()).await;

    // Wrong client secret.
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.client_secret",
        "bad-secret",
    )
    .await;
    let v = verify(&env, "case-creation").await;
    assert_eq!(
        first_failure(&v)["field"],
        "salesforce.client_secret",
        "{v}"
    );
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.client_secret",
        "client-secret-1",
    )
    .await;

    // Missing field permission.
    org.deny_field("Case", "Description");
    let v = verify(&env, "case-creation").await;
    let f = failures(&v);
    assert_eq!(f.len(), 1, "{v}");
    assert_eq!(f[0]["field"], "Case.Description", "{v}");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("field-level security")
    );

    // JWT: a user not pre-authorised, then a wrong audience.
    let jwt = sf.add_org(OrgSpec {
        jwt_public_key_pem: Some(PUBLIC_KEY.into()),
        jwt_preauthorized_users: vec![],
        ..spec("jwt@acme.example", "JWT_APP")
    });
    env.set_secret(
        "acme",
        "case-creation",
        "salesforce.private_key",
        PRIVATE_KEY,
    )
    .await;
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "jwt", "username": "jwt@acme.example", "client_id": "JWT_APP"}),
    )
    .await;
    let v = verify(&env, "case-creation").await;
    let f = first_failure(&v);
    assert_eq!(f["field"], "username", "{v}");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or("")
            .contains("pre-authorised"),
        "{v}"
    );
    drop(jwt);
    let _jwt2 = sf.add_org(OrgSpec {
        jwt_public_key_pem: Some(PUBLIC_KEY.into()),
        jwt_preauthorized_users: vec!["jwt2@acme.example".into()],
        ..spec("jwt2@acme.example", "JWT_APP_2")
    });
    configure(&env, &sf, "case-creation", json!({"auth": "jwt", "username": "jwt2@acme.example", "client_id": "JWT_APP_2", "jwt_audience": "https://test.salesforce.com"})).await;
    let v = verify(&env, "case-creation").await;
    let f = first_failure(&v);
    assert_eq!(f["field"], "login_url", "{v}");
    assert!(
        f["message"].as_str().unwrap_or("").contains("audience"),
        "{v}"
    );

    // API disabled for the user.
    let _off = sf.add_org(OrgSpec {
        api_enabled: false,
        ..spec("noapi@acme.example", "NOAPI_APP")
    });
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "password", "username": "noapi@acme.example", "client_id": "NOAPI_APP"}),
    )
    .await;
    let v = verify(&env, "case-creation").await;
    let f = first_failure(&v);
    assert_eq!(
        (f["name"].as_str(), f["field"].as_str()),
        (Some("api_enabled"), Some("username")),
        "{v}"
    );
    assert!(
        f["message"].as_str().unwrap_or("").contains("API Enabled"),
        "{v}"
    );

    // An edition without the REST API.
    let _norest = sf.add_org(OrgSpec {
        rest_api_available: false,
        ..spec("norest@acme.example", "NOREST_APP")
    });
    configure(
        &env,
        &sf,
        "case-creation",
        json!({"auth": "password", "username": "norest@acme.example", "client_id": "NOREST_APP"}),
    )
    .await;
    let v = verify(&env, "case-creation").await;
    let f = first_failure(&v);
    assert_eq!(
        (f["name"].as_str(), f["field"].as_str()),
        (Some("rest_api"), Some("edition")),
        "{v}"
    );
    assert!(
        f["message"].as_str().unwrap_or("").contains("REST API"),
        "{v}"
    );

    // No secret in any answer or log line.
    let all = format!("{:?}", env.log_lines("acme").await);
    for s in [
        "pw-secret-1",
        "bad-pw",
        "TOKENSECRET",
        "BADTOKEN",
        "client-secret-1",
        "bad-secret",
        "PRIVATE KEY",
    ] {
        assert!(!all.contains(s), "{s} leaked");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a5_api_version_configurable() {
    let (sf, env) = start().await;
    let org = sf.add_org(spec("admin@acme.example", "ACME_CLIENT"));
    password_secrets(&env, "ivr-greeting").await;
    configure(&env, &sf, "ivr-greeting", json!({"auth": "password", "username": "admin@acme.example", "client_id": "ACME_CLIENT", "api_version": "45.0"})).await;
    assert_eq!(ivr(&env, "0312345678").await["source"], "plugin");
    let data: Vec<String> = org
        .request_log()
        .into_iter()
        .filter(|r| r.path.starts_with("/services/data/"))
        .map(|r| r.path)
        .collect();
    assert!(!data.is_empty());
    assert!(
        data.iter().all(|p| p.starts_with("/services/data/v45.0/")),
        "{data:?}"
    );
    configure(&env, &sf, "ivr-greeting", json!({"auth": "password", "username": "admin@acme.example", "client_id": "ACME_CLIENT", "api_version": "v51.0"})).await;
    org.reset_counters();
    assert_eq!(ivr(&env, "0312345678").await["source"], "plugin");
    assert!(
        org.request_log()
            .iter()
            .any(|r| r.path.starts_with("/services/data/v51.0/search")),
        "{:?}",
        org.request_log()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a6_backs_off_before_the_daily_limit() {
    let (sf, env) = start().await;
    let org = sf.add_org(spec("admin@acme.example", "ACME_CLIENT"));
    password_secrets(&env, "ivr-greeting").await;
    // 15,000 a day; 5 % (750) kept in reserve. 100 left: the next answer reveals it.
    org.set_remaining_api(100);
    assert_eq!(ivr(&env, "0312345678").await["source"], "plugin");
    let sent = org.request_log().len();
    let d = ivr(&env, "0312345678").await;
    assert_eq!(d["source"], "fallback", "{d}");
    let reason = d["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("rate-limited") || reason.contains("API"),
        "{reason}"
    );
    assert!(reason.contains("/15000"), "usage in the reason: {reason}");
    assert_eq!(
        org.request_log().len(),
        sent,
        "no request sent within the reserve"
    );
    // The usage is readable by the tenant admin through verify settings.
    let v = verify(&env, "ivr-greeting").await;
    let usage = v["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "api_usage").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(usage["ok"], false, "{v}");
    assert!(
        usage["message"].as_str().unwrap_or("").contains("/15000"),
        "{v}"
    );
    env.stop().await;
}
