//! The `contacts` capability: the tenant's phone book.
//!
//! Entries belong to the tenant; the plugin names them by its own `external-id`. An id that
//! belongs to another tenant is indistinguishable from one that does not exist (`not-found`
//! either way), so that a plugin cannot even learn whether another tenant has an entry.
//! Numbers are normalised to E.164 with the tenant's default country when stored and when
//! looked up, so every written form of a number finds the same entries (SPEC L-2).
//!
//! An entry belongs to the plugin that wrote it first: another plugin may read it but not
//! replace or delete it (`denied`) unless the operator grants it `contacts = "read-write-all"`.
//! What the phone book holds is capped (`[host]`: entries per tenant, bytes per field, phones
//! per entry); over a cap the write answers `too-large` with the cap and stores nothing.

use crate::config::ContactsGrant;
use crate::runtime::Invocation;
use crate::runtime::bindings::contacts::{Contact, ContactsError, Host, Phone};
use crate::store::{ContactRefusal, ContactRow, ContactWriter, PhoneRow};

/// Entries per `upsert` call.
pub const MAX_BATCH: usize = 2_000;

impl Invocation {
    fn contacts_allowed(&mut self, write: bool) -> Result<(), ContactsError> {
        let grant = self.scope.grants.contacts;
        let ok = match grant {
            ContactsGrant::None => false,
            ContactsGrant::Read => !write,
            ContactsGrant::ReadWrite | ContactsGrant::ReadWriteAll => true,
        };
        if ok {
            return Ok(());
        }
        let why = format!(
            "plugin '{}' is not granted {} access to the phone book in plugins.toml",
            self.scope.plugin_id,
            if write { "write" } else { "read" }
        );
        self.record_denial("contacts", &why);
        Err(ContactsError::Denied(why))
    }

    /// Whose entries this plugin may replace or delete: its own, unless the operator granted
    /// `contacts = "read-write-all"`.
    fn contact_writer(&self) -> ContactWriter<'_> {
        match self.scope.grants.contacts {
            ContactsGrant::ReadWriteAll => ContactWriter::Any,
            _ => ContactWriter::Owner(&self.scope.plugin_id),
        }
    }

    /// A write the storage refused: `denied` for another plugin's entry, `too-large` for a
    /// full phone book; either way a line in the tenant's log.
    fn contacts_refused(&mut self, refusal: ContactRefusal) -> ContactsError {
        match refusal {
            ContactRefusal::NotOwner { external_id } => {
                let why = format!(
                    "entry '{external_id}' was written by another plugin; plugin '{}' may \
                     replace or delete only its own entries (contacts = \"read-write-all\" in \
                     plugins.toml allows any)",
                    self.scope.plugin_id
                );
                self.record_denial("contacts", &why);
                ContactsError::Denied(why)
            }
            ContactRefusal::Full { limit } => {
                self.log_line(
                    "warn",
                    format!(
                        "contacts: the phone book is full: at most {limit} entries per tenant \
                         ([host] contacts_per_tenant)"
                    ),
                );
                ContactsError::TooLarge(limit)
            }
        }
    }

    /// A field over its cap: `invalid` naming the field and its cap (as the WIT says of
    /// `invalid`; `too-large` is for a full phone book or batch, on which an importer stops,
    /// while it skips an invalid entry), and a line in the tenant's log.
    fn contact_too_large(&mut self, external_id: &str, field: &str, limit: usize) -> ContactsError {
        let mut id = external_id.to_string();
        crate::capabilities::log::truncate(&mut id, 64);
        let why = format!("entry '{id}': {field} is over the limit of {limit}");
        self.log_line("warn", format!("contacts: {why}"));
        ContactsError::Invalid(why)
    }

    fn checked_row(&mut self, c: Contact) -> Result<ContactRow, ContactsError> {
        let caps = self.scope.limits.contacts;
        if c.external_id.is_empty() {
            return Err(ContactsError::Invalid("external-id is empty".into()));
        }
        if c.name.trim().is_empty() {
            let mut id = c.external_id.clone();
            crate::capabilities::log::truncate(&mut id, 64);
            return Err(ContactsError::Invalid(format!(
                "name is empty (external-id {id})"
            )));
        }
        let too_long = [
            ("external-id", Some(&c.external_id), caps.field_bytes),
            ("record-type", Some(&c.record_type), caps.field_bytes),
            ("account-id", c.account_id.as_ref(), caps.field_bytes),
            ("name", Some(&c.name), caps.text_bytes),
            ("company", c.company.as_ref(), caps.text_bytes),
            ("email", c.email.as_ref(), caps.text_bytes),
        ]
        .into_iter()
        .find(|(_, v, max)| v.is_some_and(|v| v.len() > *max));
        if let Some((field, _, max)) = too_long {
            return Err(self.contact_too_large(&c.external_id, field, max));
        }
        if c.phones.len() > caps.phones_per_entry {
            return Err(self.contact_too_large(
                &c.external_id,
                "the number of phones",
                caps.phones_per_entry,
            ));
        }
        if let Some(field) = c.phones.iter().find_map(|p| {
            if p.label.len() > caps.field_bytes {
                Some("a phone label")
            } else if p.number.len() > caps.field_bytes {
                Some("a phone number")
            } else {
                None
            }
        }) {
            return Err(self.contact_too_large(&c.external_id, field, caps.field_bytes));
        }
        let country = &self.scope.default_country;
        let phones = c
            .phones
            .into_iter()
            .map(|p| PhoneRow {
                e164: pbx_phone::normalize(&p.number, country),
                label: p.label,
                number: p.number,
            })
            .collect();
        Ok(ContactRow {
            external_id: c.external_id,
            plugin: self.scope.plugin_id.to_string(),
            record_type: c.record_type,
            name: c.name,
            company: c.company,
            email: c.email,
            phones,
            account_id: c.account_id,
            modified_at: c.modified_at,
        })
    }
}

fn from_row(r: ContactRow) -> Contact {
    Contact {
        external_id: r.external_id,
        record_type: r.record_type,
        name: r.name,
        company: r.company,
        email: r.email,
        phones: r
            .phones
            .into_iter()
            .map(|p| Phone {
                label: p.label,
                number: p.number,
            })
            .collect(),
        account_id: r.account_id,
        modified_at: r.modified_at,
    }
}

fn unavailable(e: crate::store::StorageError) -> ContactsError {
    ContactsError::Unavailable(e.to_string())
}

impl Host for Invocation {
    fn upsert(&mut self, entries: Vec<Contact>) -> wasmtime::Result<Result<u32, ContactsError>> {
        if let Err(e) = self.contacts_allowed(true) {
            return Ok(Err(e));
        }
        if entries.len() > MAX_BATCH {
            return Ok(Err(ContactsError::TooLarge(MAX_BATCH as u64)));
        }
        let mut rows = Vec::with_capacity(entries.len());
        for c in entries {
            match self.checked_row(c) {
                Ok(r) => rows.push(r),
                Err(e) => return Ok(Err(e)),
            }
        }
        let s = &self.scope;
        // One transaction: every entry is written or none (a refusal writes nothing).
        let written = s.services.storage.contacts_upsert_checked(
            &s.tenant_id,
            &rows,
            self.contact_writer(),
            s.limits.contacts.per_tenant,
        );
        Ok(match written {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(refusal)) => Err(self.contacts_refused(refusal)),
            Err(e) => Err(unavailable(e)),
        })
    }

    fn delete(&mut self, external_id: String) -> wasmtime::Result<Result<(), ContactsError>> {
        if let Err(e) = self.contacts_allowed(true) {
            return Ok(Err(e));
        }
        let s = &self.scope;
        let deleted = s.services.storage.contacts_delete_checked(
            &s.tenant_id,
            &external_id,
            self.contact_writer(),
        );
        match deleted {
            Ok(Ok(true)) => Ok(Ok(())),
            Ok(Ok(false)) => Ok(Err(ContactsError::NotFound(format!(
                "no entry '{external_id}' in this tenant's phone book"
            )))),
            Ok(Err(refusal)) => Ok(Err(self.contacts_refused(refusal))),
            Err(e) => Ok(Err(unavailable(e))),
        }
    }

    fn get(&mut self, external_id: String) -> wasmtime::Result<Result<Contact, ContactsError>> {
        if let Err(e) = self.contacts_allowed(false) {
            return Ok(Err(e));
        }
        let s = &self.scope;
        match s.services.storage.contacts_get(&s.tenant_id, &external_id) {
            Ok(Some(r)) => Ok(Ok(from_row(r))),
            Ok(None) => Ok(Err(ContactsError::NotFound(format!(
                "no entry '{external_id}' in this tenant's phone book"
            )))),
            Err(e) => Ok(Err(unavailable(e))),
        }
    }

    fn lookup_by_phone(
        &mut self,
        number: String,
    ) -> wasmtime::Result<Result<Vec<Contact>, ContactsError>> {
        if let Err(e) = self.contacts_allowed(false) {
            return Ok(Err(e));
        }
        let Some(e164) = pbx_phone::normalize(&number, &self.scope.default_country) else {
            return Ok(Ok(Vec::new()));
        };
        let s = &self.scope;
        Ok(s.services
            .storage
            .contacts_lookup(&s.tenant_id, &e164)
            .map(|rows| rows.into_iter().map(from_row).collect())
            .map_err(unavailable))
    }
}
