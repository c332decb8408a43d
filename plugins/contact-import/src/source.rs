//! What is read from Salesforce per object, and how a record becomes a phone-book entry
//! (SPEC C-1, C-2, C-3).

use pbx_plugin_sdk::bindings::pbx::plugin::contacts::{Contact, Phone};
use serde_json::Value;

use crate::config::{ImportConfig, Selection};

/// A Salesforce object the import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Contact,
    Account,
    Lead,
}

impl Object {
    pub fn name(self) -> &'static str {
        match self {
            Object::Contact => "Contact",
            Object::Account => "Account",
            Object::Lead => "Lead",
        }
    }
}

/// One object to import, with the record kinds wanted from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub object: Object,
    /// Account: business accounts wanted.
    pub business: bool,
    /// Account: person accounts wanted.
    pub person: bool,
    /// Account: the org has person-account fields (query them).
    pub person_fields: bool,
}

/// The sources of a selection, in import order (Contact, Account, Lead).
pub fn sources(cfg: &ImportConfig, sel: &Selection) -> Vec<Source> {
    let person_fields = cfg.person_fields(sel);
    let mut out = Vec::new();
    let plain = |object| Source {
        object,
        business: false,
        person: false,
        person_fields: false,
    };
    if sel.contact {
        out.push(plain(Object::Contact));
    }
    if sel.account || sel.person_account {
        out.push(Source {
            object: Object::Account,
            business: sel.account,
            person: sel.person_account,
            person_fields,
        });
    }
    if sel.lead {
        out.push(plain(Object::Lead));
    }
    out
}

/// Phone fields per object, as (field, label).
const CONTACT_PHONES: &[&str] = &["Phone", "MobilePhone", "HomePhone", "OtherPhone"];
const LEAD_PHONES: &[&str] = &["Phone", "MobilePhone"];
const ACCOUNT_PHONES: &[&str] = &["Phone"];
const PERSON_PHONES: &[&str] = &["Phone", "PersonMobilePhone"];

impl Source {
    /// The SELECT list.
    pub fn select_fields(&self) -> Vec<&'static str> {
        let mut f = vec!["Id"];
        f.extend(self.readable_fields());
        if self.object == Object::Contact {
            f.push("Account.Name");
        }
        f
    }

    /// The fields of the object this import reads (for "verify settings").
    pub fn readable_fields(&self) -> Vec<&'static str> {
        match self.object {
            Object::Contact => vec![
                "Name",
                "AccountId",
                "Email",
                "Phone",
                "MobilePhone",
                "HomePhone",
                "OtherPhone",
                "LastModifiedDate",
            ],
            Object::Lead => vec![
                "Name",
                "Company",
                "Email",
                "Phone",
                "MobilePhone",
                "IsConverted",
                "LastModifiedDate",
            ],
            Object::Account => {
                let mut f = vec!["Name", "Phone", "LastModifiedDate"];
                if self.person_fields {
                    f.extend(["IsPersonAccount", "PersonMobilePhone"]);
                }
                f
            }
        }
    }

    /// WHERE conditions that do not depend on progress.
    pub fn base_filters(&self, first_import: bool) -> Vec<String> {
        let mut w = Vec::new();
        if self.object == Object::Lead && first_import {
            // Converted Leads are not imported (C-3); later syncs read them to remove them.
            w.push("IsConverted = false".to_string());
        }
        if self.object == Object::Account && self.person_fields {
            match (self.business, self.person) {
                (true, false) => w.push("IsPersonAccount = false".to_string()),
                (false, true) => w.push("IsPersonAccount = true".to_string()),
                _ => {}
            }
        }
        w
    }

    /// The phone-book ids a Salesforce id of this object may have.
    pub fn external_ids(&self, id: &str) -> Vec<String> {
        match self.object {
            Object::Account => {
                let mut v = Vec::new();
                if self.business || !self.person_fields {
                    v.push(format!("Account/{id}"));
                }
                if self.person {
                    v.push(format!("PersonAccount/{id}"));
                }
                v
            }
            o => vec![format!("{}/{id}", o.name())],
        }
    }
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Import it.
    Entry(Contact),
    /// No Name: not imported (C-3); the ids it would have.
    NoName(Vec<String>),
    /// A converted Lead: not imported.
    Converted(String),
    /// A kind of record this source does not want (e.g. a person account when only business
    /// accounts are configured).
    Unwanted,
}

fn text(rec: &Value, field: &str) -> Option<String> {
    rec.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `LastModifiedDate` ("2024-05-01T10:00:00.000+0000") as ms since the epoch.
pub fn parse_sf_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

fn phones(rec: &Value, fields: &[&str]) -> Vec<Phone> {
    fields
        .iter()
        .filter_map(|f| {
            text(rec, f).map(|number| Phone {
                label: (*f).to_string(),
                number,
            })
        })
        .collect()
}

/// Maps one record of this source (C-2, C-3). Err: the record has no Id.
pub fn map_record(src: &Source, rec: &Value) -> Result<Mapped, String> {
    let id = text(rec, "Id").ok_or_else(|| format!("a {} record without Id", src.object.name()))?;
    let modified_at = text(rec, "LastModifiedDate")
        .as_deref()
        .and_then(parse_sf_datetime)
        .map(|d| d.timestamp_millis());
    let person = src.object == Object::Account
        && src.person_fields
        && rec.get("IsPersonAccount").and_then(Value::as_bool) == Some(true);
    if src.object == Object::Account && ((person && !src.person) || (!person && !src.business)) {
        return Ok(Mapped::Unwanted);
    }
    if src.object == Object::Lead && rec.get("IsConverted").and_then(Value::as_bool) == Some(true) {
        return Ok(Mapped::Converted(format!("Lead/{id}")));
    }
    let Some(name) = text(rec, "Name") else {
        return Ok(Mapped::NoName(src.external_ids(&id)));
    };
    let entry = match src.object {
        Object::Contact => Contact {
            external_id: format!("Contact/{id}"),
            record_type: "Contact".into(),
            company: rec.get("Account").and_then(|a| text(a, "Name")),
            email: text(rec, "Email"),
            phones: phones(rec, CONTACT_PHONES),
            account_id: text(rec, "AccountId"),
            name,
            modified_at,
        },
        Object::Lead => Contact {
            external_id: format!("Lead/{id}"),
            record_type: "Lead".into(),
            company: text(rec, "Company"),
            email: text(rec, "Email"),
            phones: phones(rec, LEAD_PHONES),
            account_id: None,
            name,
            modified_at,
        },
        Object::Account => {
            let kind = if person { "PersonAccount" } else { "Account" };
            Contact {
                external_id: format!("{kind}/{id}"),
                record_type: kind.into(),
                company: Some(name.clone()),
                email: None,
                phones: phones(
                    rec,
                    if person {
                        PERSON_PHONES
                    } else {
                        ACCOUNT_PHONES
                    },
                ),
                account_id: Some(id),
                name,
                modified_at,
            }
        }
    };
    Ok(Mapped::Entry(entry))
}
