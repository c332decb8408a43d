//! Building blocks of "verify settings" (SPEC A-4, H-11) shared by the plugins: a fresh login
//! explained field by field, object and field permissions from `describe`, the org-level API
//! switches (API disabled for the user, an edition without the REST API) and the API usage
//! . Each plugin turns the [`Check`]s into its WIT `check-item`s.

use pbx_plugin_sdk::Host;

use crate::{Client, SfError};

/// One thing checked (the WIT `check-item`, without depending on a plugin's bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// The setting, secret or Salesforce field at fault.
    pub field: Option<String>,
    pub message: String,
}

impl Check {
    pub fn ok(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            field: None,
            message: message.into(),
        }
    }

    pub fn fail(name: &str, field: Option<&str>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

/// What a plugin needs of an object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub create: bool,
    pub update: bool,
    pub query: bool,
}

/// Logs in afresh (the cached session is forgotten). `Err` carries the failed item, naming the
/// wrong credential ([`crate::auth::explain_login_failure`]: password vs security token vs
/// client id): the remaining checks cannot run without a session.
pub fn login<H: Host>(client: &Client<H>) -> Result<Check, Check> {
    let cfg = client.config();
    client.forget_session();
    match client.login() {
        Ok(s) => Ok(Check::ok(
            "login",
            format!("logged in to {} ({})", s.instance_url, cfg.auth.as_str()),
        )),
        Err(SfError::Auth { error, description }) => {
            let (field, message) =
                crate::auth::explain_login_failure(client.host(), cfg, &error, &description);
            Err(Check::fail("login", Some(&field), message))
        }
        Err(SfError::Config { field, message }) => Err(Check::fail(
            "login",
            Some(&field),
            format!("{field} {message}"),
        )),
        Err(e) => Err(Check::fail("login", None, format!("login failed: {e}"))),
    }
}

/// Explains an error of a REST call made while verifying: the org-level API switches name
/// what to change; anything else is reported as is.
pub fn explain_rest_error(name: &str, e: &SfError) -> Check {
    match e {
        SfError::Forbidden { code, message }
            if code == "API_DISABLED_FOR_ORG" && message.contains("REST API") =>
        {
            Check::fail(
                "rest_api",
                Some("edition"),
                format!(
                    "this Salesforce edition has no REST API access (Salesforce: {message}); use Enterprise, Unlimited or Developer Edition, or add API access to the edition"
                ),
            )
        }
        SfError::Forbidden { code, message }
            if code == "API_DISABLED_FOR_ORG" || code == "API_CURRENTLY_DISABLED" =>
        {
            Check::fail(
                "api_enabled",
                Some("username"),
                format!(
                    "the API is not enabled for the integration user: tick \"API Enabled\" on the user's profile or permission set (Salesforce: {message})"
                ),
            )
        }
        e => Check::fail(name, None, format!("{name}: {e}")),
    }
}

/// Describes `object` and checks the object-level access and each field in `fields`
/// (`create` / `update` as the plugin writes them; reading only needs the field visible).
pub fn object<H: Host>(
    client: &Client<H>,
    object: &str,
    need: Need,
    fields: &[&str],
) -> Vec<Check> {
    let mut items = Vec::new();
    let d = match client.describe(object) {
        Ok(d) => d,
        Err(SfError::NotFound { .. }) => {
            items.push(Check::fail(
                object,
                Some(object),
                format!(
                    "the integration user cannot see {object}: grant Read{} on {object}",
                    if need.create { " and Create" } else { "" }
                ),
            ));
            return items;
        }
        Err(e) => {
            items.push(explain_rest_error(object, &e));
            return items;
        }
    };
    let mut missing = Vec::new();
    if need.create && !d.createable {
        missing.push("Create");
    }
    if need.update && !d.updateable {
        missing.push("Edit");
    }
    if need.query && !d.queryable {
        missing.push("Read");
    }
    if missing.is_empty() {
        items.push(Check::ok(
            object,
            format!("the integration user has the access to {object} it needs"),
        ));
    } else {
        items.push(Check::fail(
            object,
            Some(object),
            format!(
                "the integration user lacks {} on {object}",
                missing.join(" and ")
            ),
        ));
    }
    for name in fields {
        let check_name = format!("{object}.{name}");
        let item = match d.field(name) {
            None => Check::fail(
                &check_name,
                Some(&check_name),
                format!(
                    "{check_name} does not exist or is hidden from the integration user: grant read{} access to it in field-level security",
                    if need.create || need.update {
                        " and edit"
                    } else {
                        ""
                    }
                ),
            ),
            Some(f) if (need.create && !f.createable) || (need.update && !f.updateable) => {
                Check::fail(
                    &check_name,
                    Some(&check_name),
                    format!(
                        "{check_name} is read-only for the integration user: grant edit access in field-level security"
                    ),
                )
            }
            Some(_) => Check::ok(&check_name, format!("{check_name} is accessible")),
        };
        items.push(item);
    }
    items
}

/// The API usage last reported by Salesforce: ok while outside the reserve.
pub fn usage<H: Host>(client: &Client<H>) -> Option<Check> {
    let u = client.usage()?;
    let reserve = client
        .config()
        .api_reserve_percent
        .unwrap_or(crate::client::DEFAULT_RESERVE_PERCENT);
    Some(if u.over_reserve(reserve) {
        Check::fail(
            "api_usage",
            Some("api_reserve_percent"),
            format!(
                "API usage {}/{} is within the {reserve}% reserve: the plugin pauses Salesforce requests until the daily allocation recovers",
                u.used, u.max
            ),
        )
    } else {
        Check::ok(
            "api_usage",
            format!("API usage {}/{} in the last 24 hours", u.used, u.max),
        )
    })
}
