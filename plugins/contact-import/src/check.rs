//! "Verify settings" (SPEC A-4, H-11): settings, login (naming the wrong credential), and each
//! configured object and every field the import reads.

use pbx_plugin_sdk::bindings::pbx::plugin::{contacts, http, log, secrets, state};
use pbx_plugin_sdk::{Context, Host};
use pbx_salesforce::config::{SECRET_PASSWORD, SECRET_SECURITY_TOKEN};
use pbx_salesforce::{AuthMethod, Client, SalesforceConfig, SfError};

use crate::exports::pbx::plugin::settings_check::CheckItem;
use crate::source::sources;

fn item(name: &str, ok: bool, field: Option<&str>, message: impl Into<String>) -> CheckItem {
    CheckItem {
        name: name.into(),
        ok,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// The host with the security token hidden: a SOAP `login()` with the password alone tells a
/// wrong password (`INVALID_LOGIN`) from a wrong token (`LOGIN_MUST_USE_SECURITY_TOKEN`, or a
/// success from a trusted network), which the OAuth flow does not ("authentication failure").
struct WithoutToken<'a, H: Host>(&'a H);

impl<H: Host> Host for WithoutToken<'_, H> {
    fn http_send(&self, req: &http::Request) -> Result<http::Response, http::HttpError> {
        self.0.http_send(req)
    }
    fn secret(&self, name: &str) -> Result<String, secrets::SecretError> {
        if name == SECRET_SECURITY_TOKEN {
            return Err(secrets::SecretError::NotSet(name.into()));
        }
        self.0.secret(name)
    }
    fn state_get(&self, key: &str) -> Result<Option<String>, state::StateError> {
        self.0.state_get(key)
    }
    fn state_set(&self, key: &str, value: &str, ttl: Option<u32>) -> Result<(), state::StateError> {
        self.0.state_set(key, value, ttl)
    }
    fn state_delete(&self, key: &str) -> Result<(), state::StateError> {
        self.0.state_delete(key)
    }
    fn contacts_upsert(
        &self,
        entries: &[contacts::Contact],
    ) -> Result<u32, contacts::ContactsError> {
        self.0.contacts_upsert(entries)
    }
    fn contacts_delete(&self, external_id: &str) -> Result<(), contacts::ContactsError> {
        self.0.contacts_delete(external_id)
    }
    fn contacts_get(
        &self,
        external_id: &str,
    ) -> Result<contacts::Contact, contacts::ContactsError> {
        self.0.contacts_get(external_id)
    }
    fn contacts_lookup(
        &self,
        number: &str,
    ) -> Result<Vec<contacts::Contact>, contacts::ContactsError> {
        self.0.contacts_lookup(number)
    }
    fn log(&self, level: log::Level, message: &str) {
        self.0.log(level, message)
    }
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

/// After the password flow's "authentication failure": which of password and token is wrong.
/// One extra login attempt, only when the check already failed.
fn diagnose_password(host: &impl Host, cfg: &SalesforceConfig) -> Option<(String, String)> {
    let soap = SalesforceConfig {
        auth: AuthMethod::Soap,
        ..cfg.clone()
    };
    let token_set = host.secret(SECRET_SECURITY_TOKEN).is_ok();
    match pbx_salesforce::auth::login(&WithoutToken(host), &soap) {
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

/// Checks the settings; every problem is reported, each naming the setting or field at fault.
pub fn check(host: &impl Host, ctx: &Context) -> Vec<CheckItem> {
    let cfg = match pbx_plugin_sdk::config::parse::<crate::config::ImportConfig>(ctx) {
        Ok(c) => c,
        Err(e) => return vec![item("settings", false, e.field.as_deref(), e.to_string())],
    };
    let sel = match cfg.selection() {
        Ok(s) => s,
        Err((field, m)) => return vec![item("objects", false, Some(&field), m)],
    };
    let mut items = Vec::new();
    let client = Client::new(host, cfg.salesforce.clone());
    client.forget_session();
    match client.login() {
        Ok(s) => items.push(item(
            "login",
            true,
            None,
            format!(
                "logged in to {} ({})",
                s.instance_url,
                cfg.salesforce.auth.as_str()
            ),
        )),
        Err(SfError::Auth { error, description }) => {
            let diagnosed = (cfg.salesforce.auth == AuthMethod::Password
                && error == "invalid_grant"
                && description
                    .to_ascii_lowercase()
                    .contains("authentication failure"))
            .then(|| diagnose_password(host, &cfg.salesforce))
            .flatten();
            let (field, message) = diagnosed.unwrap_or_else(|| {
                pbx_salesforce::auth::explain_auth_failure(
                    cfg.salesforce.auth,
                    &error,
                    &description,
                )
            });
            items.push(item("login", false, Some(&field), message));
            return items;
        }
        Err(SfError::Config { field, message }) => {
            items.push(item(
                "login",
                false,
                Some(&field),
                format!("{field} {message}"),
            ));
            return items;
        }
        Err(e) => {
            items.push(item("login", false, None, format!("login failed: {e}")));
            return items;
        }
    }
    for src in sources(&cfg, &sel) {
        let object = src.object.name();
        match client.describe(object) {
            Ok(d) => {
                items.push(item(
                    object,
                    d.queryable,
                    (!d.queryable).then_some(object),
                    if d.queryable {
                        format!("the integration user can read {object} records")
                    } else {
                        format!("the integration user cannot query {object}: grant Read on {object}")
                    },
                ));
                for field in src.readable_fields() {
                    let name = format!("{object}.{field}");
                    let ok = d.field(field).is_some();
                    items.push(item(
                        &name,
                        ok,
                        (!ok).then_some(name.as_str()),
                        if ok {
                            format!("{name} is readable")
                        } else {
                            format!(
                                "{name} does not exist or is hidden from the integration user (field-level security): make it visible to the user's profile"
                            )
                        },
                    ));
                }
            }
            Err(SfError::NotFound { .. } | SfError::Forbidden { .. }) => items.push(item(
                object,
                false,
                Some(object),
                format!(
                    "the integration user cannot access {object} (no Read permission on the object, or it does not exist): grant Read on {object} or remove it from `objects`"
                ),
            )),
            Err(e) => items.push(item(
                object,
                false,
                None,
                format!("cannot describe {object}: {e}"),
            )),
        }
    }
    client.save_usage();
    items
}
