//! In-memory records of one org.
//!
//! Records are kept after deletion (with `IsDeleted = true` and a deletion time) because the
//! real service keeps them in the recycle bin: `queryAll` still returns them and the
//! `sobjects/{Type}/deleted` replication resource reports them (SPEC C-4: incremental sync
//! must see deletions and merges).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One record. Field names are canonical (schema spelling); an absent field is null.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    /// Canonical object name.
    pub sobject: String,
    pub fields: BTreeMap<String, Value>,
    pub deleted_at: Option<DateTime<Utc>>,
}

static NULL: Value = Value::Null;

impl Record {
    /// A stored field value (`Null` when unset). Use [`Store::value`] for calculated fields.
    pub fn get(&self, field: &str) -> &Value {
        self.fields.get(field).unwrap_or(&NULL)
    }

    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.get(field).as_str()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// All records of an org, by id, plus per-object insertion order (the order queries return
/// rows in when there is no ORDER BY).
#[derive(Clone, Debug, Default)]
pub struct Store {
    order: HashMap<String, Vec<String>>,
    records: HashMap<String, Record>,
    /// Last Case auto-number handed out.
    pub case_number: u64,
}

impl Store {
    pub fn insert(&mut self, rec: Record) {
        self.order
            .entry(rec.sobject.to_ascii_lowercase())
            .or_default()
            .push(rec.id.clone());
        self.records.insert(rec.id.clone(), rec);
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        self.records.get_mut(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.records.contains_key(id)
    }

    /// Records of one object in insertion order; deleted ones only if asked for.
    pub fn iter_object<'a>(
        &'a self,
        sobject: &str,
        include_deleted: bool,
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.order
            .get(&sobject.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter_map(move |id| self.records.get(id))
            .filter(move |r| include_deleted || !r.is_deleted())
    }

    /// Ids of live records of `sobject` whose `field` equals `value`.
    pub fn ids_where(&self, sobject: &str, field: &str, value: &str) -> Vec<String> {
        self.iter_object(sobject, false)
            .filter(|r| r.get_str(field) == Some(value))
            .map(|r| r.id.clone())
            .collect()
    }

    /// A field value including the calculated ones that depend on other records
    /// (Case.ContactPhone/ContactMobile/ContactEmail are formula-like lookups of the contact).
    pub fn value(&self, rec: &Record, field: &str) -> Value {
        if rec.sobject == "Case" {
            let from_contact = match field {
                "ContactPhone" => Some("Phone"),
                "ContactMobile" => Some("MobilePhone"),
                "ContactEmail" => Some("Email"),
                _ => None,
            };
            if let Some(src) = from_contact {
                return rec
                    .get_str("ContactId")
                    .and_then(|cid| self.get(cid))
                    .map(|c| c.get(src).clone())
                    .unwrap_or(Value::Null);
            }
        }
        rec.get(field).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, obj: &str) -> Record {
        Record {
            id: id.to_string(),
            sobject: obj.to_string(),
            fields: BTreeMap::new(),
            deleted_at: None,
        }
    }

    #[test]
    fn keeps_insertion_order_and_hides_deleted() {
        let mut s = Store::default();
        s.insert(rec("a", "Account"));
        s.insert(rec("b", "Account"));
        s.insert(rec("c", "Contact"));
        if let Some(r) = s.get_mut("a") {
            r.deleted_at = Some(Utc::now());
        }
        let live: Vec<_> = s
            .iter_object("account", false)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(live, vec!["b"]);
        let all: Vec<_> = s
            .iter_object("ACCOUNT", true)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(all, vec!["a", "b"]);
    }
}
