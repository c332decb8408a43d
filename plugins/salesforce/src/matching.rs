//! Which Salesforce record a call belongs to (SPEC L-1, L-2).
//!
//! Rules, in order:
//! 1. A click-to-call record id on the call wins over any matching.
//! 2. Otherwise a record matches when one of its phone fields is the same number as the other
//!    party's ([`pbx_phone::same_number`], so `03-1234-5678`, `(03) 1234 5678` and
//!    `+81 3 1234 5678` are equal): Contact (Phone, MobilePhone), Account / Person Account
//!    (Phone, PersonMobilePhone), Lead (Phone, MobilePhone). Search results are re-checked
//!    here because SOSL also finds numbers in other phone fields (Fax, HomePhone…).
//! 3. Priority: Contact, then Account (Person Accounts included), then Lead; several matches
//!    of the chosen kind: the most recently modified.
//!
//! The result says why, in words the tenant admin reads in the integration log.

use pbx_plugin_sdk::bindings::pbx::plugin::contacts::Contact as PhoneBookEntry;
use serde_json::Value;

/// The kinds of record a call can be linked to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKind {
    Contact,
    Account,
    PersonAccount,
    Lead,
    /// Any other object (a click-to-call from a Case or an Opportunity); the text is the
    /// object name or the id prefix.
    Other(String),
}

impl RecordKind {
    /// The Salesforce object name.
    pub fn object(&self) -> &str {
        match self {
            RecordKind::Contact => "Contact",
            RecordKind::Account => "Account",
            RecordKind::PersonAccount => "PersonAccount",
            RecordKind::Lead => "Lead",
            RecordKind::Other(o) => o,
        }
    }

    /// Matching priority (lower wins): Contact, Account/PersonAccount, Lead.
    fn rank(&self) -> u8 {
        match self {
            RecordKind::Contact => 0,
            RecordKind::Account | RecordKind::PersonAccount => 1,
            RecordKind::Lead => 2,
            RecordKind::Other(_) => 3,
        }
    }

    /// The kind of a record id by its key prefix (`003` Contact, `001` Account, `00Q` Lead).
    pub fn from_id(id: &str) -> RecordKind {
        match id.get(..3) {
            Some("003") => RecordKind::Contact,
            Some("001") => RecordKind::Account,
            Some("00Q") => RecordKind::Lead,
            Some("500") => RecordKind::Other("Case".into()),
            Some("006") => RecordKind::Other("Opportunity".into()),
            Some(p) => RecordKind::Other(p.to_string()),
            None => RecordKind::Other(String::new()),
        }
    }

    fn from_object(object: &str) -> RecordKind {
        match object {
            "Contact" => RecordKind::Contact,
            "Account" => RecordKind::Account,
            "PersonAccount" => RecordKind::PersonAccount,
            "Lead" => RecordKind::Lead,
            other => RecordKind::Other(other.to_string()),
        }
    }

    /// The phone fields L-1 matches on for this kind.
    fn phone_fields(&self) -> &'static [&'static str] {
        match self {
            RecordKind::Contact | RecordKind::Lead => &["Phone", "MobilePhone"],
            RecordKind::Account => &["Phone"],
            RecordKind::PersonAccount => &["Phone", "PersonMobilePhone", "MobilePhone"],
            RecordKind::Other(_) => &[],
        }
    }
}

/// A record that may match: from a SOSL result or from the tenant's phone book.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: RecordKind,
    pub id: String,
    pub name: Option<String>,
    /// (field name, number as stored).
    pub phones: Vec<(String, String)>,
    /// Last modification, ms since the epoch.
    pub modified_at: Option<i64>,
    /// A Contact's account.
    pub account_id: Option<String>,
    /// A Person Account's contact.
    pub person_contact_id: Option<String>,
}

/// Parses Salesforce's dateTime (`2013-05-20T20:49:32.000+0000`) to ms since the epoch.
pub fn parse_datetime(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|d| d.timestamp_millis())
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Candidate {
    /// From a REST/SOSL record (`attributes.type` names the object).
    pub fn from_record(v: &Value) -> Option<Candidate> {
        let object = v.get("attributes")?.get("type")?.as_str()?;
        let id = text(v, "Id")?;
        let mut kind = RecordKind::from_object(object);
        if kind == RecordKind::Account
            && v.get("IsPersonAccount").and_then(Value::as_bool) == Some(true)
        {
            kind = RecordKind::PersonAccount;
        }
        let phones = kind
            .phone_fields()
            .iter()
            .filter_map(|f| text(v, f).map(|n| ((*f).to_string(), n)))
            .collect();
        Some(Candidate {
            kind,
            id,
            name: text(v, "Name"),
            phones,
            modified_at: text(v, "LastModifiedDate").and_then(|d| parse_datetime(&d)),
            account_id: text(v, "AccountId"),
            person_contact_id: text(v, "PersonContactId"),
        })
    }

    /// From a phone-book entry written by a contact-import plugin: `external-id` is
    /// "Object/Id" (or the bare id), `record-type` the object.
    pub fn from_phone_book(entry: &PhoneBookEntry) -> Option<Candidate> {
        let id = entry
            .external_id
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())?
            .to_string();
        let kind = if entry.record_type.is_empty() {
            RecordKind::from_id(&id)
        } else {
            RecordKind::from_object(&entry.record_type)
        };
        Some(Candidate {
            kind,
            id,
            name: Some(entry.name.clone()).filter(|n| !n.is_empty()),
            phones: entry
                .phones
                .iter()
                .map(|p| (p.label.clone(), p.number.clone()))
                .collect(),
            modified_at: entry.modified_at,
            account_id: entry.account_id.clone(),
            person_contact_id: None,
        })
    }

    /// The first phone field holding `number`.
    fn matched_field(&self, number: &str, country: &str) -> Option<&str> {
        self.phones
            .iter()
            .find(|(_, n)| pbx_phone::same_number(n, number, country))
            .map(|(f, _)| f.as_str())
    }
}

/// The record a call is linked to, with the Task's WhoId/WhatId and a reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub kind: RecordKind,
    pub id: String,
    pub name: Option<String>,
    /// For a Task's WhoId: the Contact, the Lead, or a Person Account's contact.
    pub who_id: Option<String>,
    /// For a Task's WhatId: the Account (of the Contact, or the Account itself), or the
    /// click-to-call record when it is neither person nor account.
    pub what_id: Option<String>,
    /// The phone field that matched (`None` for click-to-call).
    pub matched_field: Option<String>,
    /// Why this record, e.g. "Contact 003… matched on MobilePhone; 2 Contacts matched, the
    /// newest chosen".
    pub reason: String,
}

fn who_what(kind: &RecordKind, c: &Candidate) -> (Option<String>, Option<String>) {
    match kind {
        RecordKind::Contact => (Some(c.id.clone()), c.account_id.clone()),
        RecordKind::Lead => (Some(c.id.clone()), None),
        RecordKind::Account => (None, Some(c.id.clone())),
        RecordKind::PersonAccount => (c.person_contact_id.clone(), Some(c.id.clone())),
        RecordKind::Other(_) => (None, Some(c.id.clone())),
    }
}

/// The match for a click-to-call record id (rule 1).
pub fn click_to_call(record_id: &str) -> Match {
    let kind = RecordKind::from_id(record_id);
    let c = Candidate {
        kind: kind.clone(),
        id: record_id.to_string(),
        name: None,
        phones: Vec::new(),
        modified_at: None,
        account_id: None,
        person_contact_id: None,
    };
    let (who_id, what_id) = who_what(&kind, &c);
    Match {
        reason: format!(
            "{} {record_id} chosen: the agent started the call from it (click-to-call)",
            kind.object()
        ),
        kind,
        id: record_id.to_string(),
        name: None,
        who_id,
        what_id,
        matched_field: None,
    }
}

fn plural(kind: &RecordKind, n: usize) -> String {
    let o = match kind {
        RecordKind::PersonAccount => "Account",
        k => k.object(),
    };
    if n == 1 {
        format!("1 {o}")
    } else {
        format!("{n} {o}s")
    }
}

/// Applies the rules to the candidates for `number`. `None`: nothing matched.
pub fn choose(
    number: &str,
    default_country: &str,
    click_to_call_id: Option<&str>,
    candidates: &[Candidate],
) -> Option<Match> {
    if let Some(id) = click_to_call_id.map(str::trim).filter(|s| !s.is_empty()) {
        return Some(click_to_call(id));
    }
    let matched: Vec<(&Candidate, &str)> = candidates
        .iter()
        .filter_map(|c| c.matched_field(number, default_country).map(|f| (c, f)))
        .collect();
    let best_rank = matched.iter().map(|(c, _)| c.kind.rank()).min()?;
    let mut same_rank: Vec<&(&Candidate, &str)> = matched
        .iter()
        .filter(|(c, _)| c.kind.rank() == best_rank)
        .collect();
    // Newest first; records without a date last; ties keep the search order.
    same_rank.sort_by(|a, b| {
        b.0.modified_at
            .unwrap_or(i64::MIN)
            .cmp(&a.0.modified_at.unwrap_or(i64::MIN))
    });
    let (chosen, field) = *same_rank.first()?;
    let mut reason = format!("{} {} matched on {field}", chosen.kind.object(), chosen.id);
    if same_rank.len() > 1 {
        reason.push_str(&format!(
            "; {} matched, the newest chosen",
            plural(&chosen.kind, same_rank.len())
        ));
    }
    let others: Vec<String> = [RecordKind::Contact, RecordKind::Account, RecordKind::Lead]
        .iter()
        .filter(|k| k.rank() != best_rank)
        .filter_map(|k| {
            let n = matched
                .iter()
                .filter(|(c, _)| c.kind.rank() == k.rank())
                .count();
            (n > 0).then(|| plural(k, n))
        })
        .collect();
    if !others.is_empty() {
        reason.push_str(&format!(
            "; also matched {} (lower priority)",
            others.join(", ")
        ));
    }
    let (who_id, what_id) = who_what(&chosen.kind, chosen);
    Some(Match {
        kind: chosen.kind.clone(),
        id: chosen.id.clone(),
        name: chosen.name.clone(),
        who_id,
        what_id,
        matched_field: Some(field.to_string()),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(object: &str, id: &str, phone: &str, mobile: Option<&str>, modified: &str) -> Value {
        let mut v = json!({
            "attributes": {"type": object, "url": format!("/services/data/v59.0/sobjects/{object}/{id}")},
            "Id": id, "Name": format!("{object} {id}"), "Phone": phone,
            "LastModifiedDate": modified,
        });
        if let Some(m) = mobile {
            v["MobilePhone"] = json!(m);
        }
        v
    }

    fn cands(records: &[Value]) -> Vec<Candidate> {
        records.iter().filter_map(Candidate::from_record).collect()
    }

    #[test]
    fn contact_beats_account_beats_lead() {
        let c = cands(&[
            rec(
                "Lead",
                "00Q000000000001AAA",
                "03-1234-5678",
                None,
                "2024-03-01T00:00:00.000+0000",
            ),
            rec(
                "Account",
                "001000000000001AAA",
                "(03) 1234 5678",
                None,
                "2024-02-01T00:00:00.000+0000",
            ),
            rec(
                "Contact",
                "003000000000001AAA",
                "090-0000-0000",
                Some("+81 3 1234 5678"),
                "2020-01-01T00:00:00.000+0000",
            ),
        ]);
        let m = choose("0312345678", "JP", None, &c).expect("match");
        assert_eq!(m.kind, RecordKind::Contact);
        assert_eq!(m.who_id.as_deref(), Some("003000000000001AAA"));
        assert_eq!(m.matched_field.as_deref(), Some("MobilePhone"));
        assert_eq!(
            m.reason,
            "Contact 003000000000001AAA matched on MobilePhone; also matched 1 Account, 1 Lead (lower priority)"
        );
        let m = choose("0312345678", "JP", None, &c[..2]).expect("match");
        assert_eq!(m.kind, RecordKind::Account);
        assert_eq!(
            (m.who_id, m.what_id.as_deref()),
            (None, Some("001000000000001AAA"))
        );
        let m = choose("0312345678", "JP", None, &c[..1]).expect("match");
        assert_eq!(m.kind, RecordKind::Lead);
    }

    #[test]
    fn newest_of_several_wins() {
        let mut c = rec(
            "Contact",
            "003000000000001AAA",
            "03-1234-5678",
            None,
            "2023-01-01T00:00:00.000+0000",
        );
        c["AccountId"] = json!("001000000000009AAA");
        let d = rec(
            "Contact",
            "003000000000002AAA",
            "0312345678",
            None,
            "2024-06-01T12:00:00.000+0000",
        );
        let e = rec(
            "Contact",
            "003000000000003AAA",
            "03-9999-9999",
            None,
            "2025-01-01T00:00:00.000+0000",
        );
        let m = choose("+81312345678", "JP", None, &cands(&[c.clone(), d, e])).expect("match");
        assert_eq!(m.id, "003000000000002AAA");
        assert_eq!(
            m.reason,
            "Contact 003000000000002AAA matched on Phone; 2 Contacts matched, the newest chosen"
        );
        let m = choose("+81312345678", "JP", None, &cands(&[c])).expect("match");
        assert_eq!(m.what_id.as_deref(), Some("001000000000009AAA"));
    }

    #[test]
    fn click_to_call_wins() {
        let c = cands(&[rec(
            "Contact",
            "003000000000001AAA",
            "03-1234-5678",
            None,
            "2024-01-01T00:00:00.000+0000",
        )]);
        let m = choose("0312345678", "JP", Some("00Q000000000007AAA"), &c).expect("match");
        assert_eq!(m.kind, RecordKind::Lead);
        assert_eq!(m.who_id.as_deref(), Some("00Q000000000007AAA"));
        assert!(m.reason.contains("click-to-call"), "{}", m.reason);
        let m = choose("0312345678", "JP", Some("500000000000001AAA"), &c).expect("match");
        assert_eq!(m.kind, RecordKind::Other("Case".into()));
        assert_eq!(m.what_id.as_deref(), Some("500000000000001AAA"));
    }

    #[test]
    fn no_match_when_no_phone_field_holds_the_number() {
        let c = cands(&[rec(
            "Contact",
            "003000000000001AAA",
            "03-1111-2222",
            None,
            "2024-01-01T00:00:00.000+0000",
        )]);
        assert_eq!(choose("0312345678", "JP", None, &c), None);
        assert_eq!(choose("0312345678", "JP", None, &[]), None);
    }

    #[test]
    fn person_accounts() {
        let mut v = rec(
            "Account",
            "001000000000001AAA",
            "",
            None,
            "2024-01-01T00:00:00.000+0000",
        );
        v["IsPersonAccount"] = json!(true);
        v["PersonContactId"] = json!("003000000000005AAA");
        v["PersonMobilePhone"] = json!("090-1234-5678");
        let m = choose("+819012345678", "JP", None, &cands(&[v])).expect("match");
        assert_eq!(m.kind, RecordKind::PersonAccount);
        assert_eq!(m.who_id.as_deref(), Some("003000000000005AAA"));
        assert_eq!(m.what_id.as_deref(), Some("001000000000001AAA"));
        assert_eq!(m.matched_field.as_deref(), Some("PersonMobilePhone"));
    }

    #[test]
    fn phone_book_entries() {
        use pbx_plugin_sdk::bindings::pbx::plugin::contacts::Phone;
        let entry = PhoneBookEntry {
            external_id: "Contact/003000000000001AAA".into(),
            record_type: "Contact".into(),
            name: "山田 太郎".into(),
            company: None,
            email: None,
            phones: vec![Phone {
                label: "MobilePhone".into(),
                number: "090-1234-5678".into(),
            }],
            account_id: Some("001000000000001AAA".into()),
            modified_at: Some(1),
        };
        let c = Candidate::from_phone_book(&entry).expect("candidate");
        let m = choose("+819012345678", "JP", None, &[c]).expect("match");
        assert_eq!(m.id, "003000000000001AAA");
        assert_eq!(m.name.as_deref(), Some("山田 太郎"));
        assert_eq!(m.what_id.as_deref(), Some("001000000000001AAA"));
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01.000+0000"), Some(1000));
        assert_eq!(
            parse_datetime("2013-05-20T20:49:32.000+0000"),
            Some(1_369_082_972_000)
        );
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_datetime("yesterday"), None);
    }
}
