//! "Verify settings" (SPEC A-4, H-11): settings, login (naming the wrong credential: the shared
//! [`pbx_salesforce::verify::login`]), and each configured object and every field the import
//! reads.

use pbx_plugin_sdk::{Context, Host};
use pbx_salesforce::verify::{self, Check};
use pbx_salesforce::{Client, SfError};

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

fn from_check(c: Check) -> CheckItem {
    CheckItem {
        name: c.name,
        ok: c.ok,
        field: c.field,
        message: c.message,
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
    match verify::login(&client) {
        Ok(c) => items.push(from_check(c)),
        Err(c) => {
            items.push(from_check(c));
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
