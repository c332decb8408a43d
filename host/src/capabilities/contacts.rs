//! The `contacts` capability: the tenant's phone book.
//!
//! Entries belong to the tenant; the plugin names them by its own `external-id`. An id that
//! belongs to another tenant is indistinguishable from one that does not exist (`not-found`
//! either way), so that a plugin cannot even learn whether another tenant has an entry.
//! Numbers are normalised to E.164 with the tenant's default country when stored and when
//! looked up, so every written form of a number finds the same entries (SPEC L-2).

use crate::config::ContactsGrant;
use crate::runtime::Invocation;
use crate::runtime::bindings::contacts::{Contact, ContactsError, Host, Phone};
use crate::store::{ContactRow, PhoneRow};

/// Entries per `upsert` call.
pub const MAX_BATCH: usize = 2_000;
const MAX_ID_BYTES: usize = 255;
const MAX_FIELD_BYTES: usize = 1_024;

impl Invocation {
    fn contacts_allowed(&mut self, write: bool) -> Result<(), ContactsError> {
        let grant = self.scope.grants.contacts;
        let ok = match grant {
            ContactsGrant::None => false,
            ContactsGrant::Read => !write,
            ContactsGrant::ReadWrite => true,
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

    fn to_row(&self, c: Contact) -> Result<ContactRow, ContactsError> {
        if c.external_id.is_empty() || c.external_id.len() > MAX_ID_BYTES {
            return Err(ContactsError::Invalid(format!(
                "external-id must be 1 to {MAX_ID_BYTES} bytes"
            )));
        }
        if c.name.trim().is_empty() {
            return Err(ContactsError::Invalid(format!(
                "name is empty (external-id {})",
                c.external_id
            )));
        }
        for (field, v) in [
            ("name", Some(&c.name)),
            ("company", c.company.as_ref()),
            ("email", c.email.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > MAX_FIELD_BYTES) {
                return Err(ContactsError::Invalid(format!(
                    "{field} is over {MAX_FIELD_BYTES} bytes"
                )));
            }
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
            match self.to_row(c) {
                Ok(r) => rows.push(r),
                Err(e) => return Ok(Err(e)),
            }
        }
        let s = &self.scope;
        Ok(s.services
            .storage
            .contacts_upsert(&s.tenant_id, &rows)
            .map_err(unavailable))
    }

    fn delete(&mut self, external_id: String) -> wasmtime::Result<Result<(), ContactsError>> {
        if let Err(e) = self.contacts_allowed(true) {
            return Ok(Err(e));
        }
        let s = &self.scope;
        match s
            .services
            .storage
            .contacts_delete(&s.tenant_id, &external_id)
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(Err(ContactsError::NotFound(format!(
                "no entry '{external_id}' in this tenant's phone book"
            )))),
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
