//! Building SOQL and SOSL safely (docs/salesforce-api.md §2a, §2b).

/// Characters SOSL reserves inside `FIND {…}`; each is escaped with a backslash. The leading
/// `+` of an E.164 number is one of them.
pub const SOSL_RESERVED: &[char] = &[
    '?', '&', '|', '!', '{', '}', '[', ']', '(', ')', '^', '~', '*', ':', '\\', '"', '\'', '+', '-',
];

/// Escapes a SOSL search term for use inside `FIND {…}`.
pub fn escape_sosl(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 4);
    for c in term.chars() {
        if SOSL_RESERVED.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes a value for a SOQL string literal (`'…'`): backslash and quote.
pub fn escape_soql(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a string is a plausible Salesforce id (15 or 18 alphanumerics): ids coming from
/// outside (a click-to-call record id) are checked before they go into a URL or a query.
pub fn is_salesforce_id(id: &str) -> bool {
    (id.len() == 15 || id.len() == 18) && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Which objects a phone search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneSearchScope {
    pub contacts: bool,
    pub accounts: bool,
    pub leads: bool,
    /// The org has Person Accounts: ask for `IsPersonAccount`, `PersonContactId` and
    /// `PersonMobilePhone` (those fields do not exist otherwise, and asking fails the search).
    pub person_accounts: bool,
}

impl Default for PhoneSearchScope {
    fn default() -> Self {
        PhoneSearchScope {
            contacts: true,
            accounts: true,
            leads: true,
            person_accounts: false,
        }
    }
}

/// The search terms for a number: its E.164 form and, when it belongs to the default
/// country, its national form (`0312345678`), because how Salesforce tokenises stored phone
/// numbers is not documented and records hold either form.
pub fn phone_terms(number: &str, default_country: &str) -> Option<Vec<String>> {
    let e164 = pbx_phone::normalize(number, default_country)?;
    let mut terms = vec![e164.clone()];
    if let Some(country) = pbx_phone::country(default_country) {
        let cc = format!("+{}", country.calling_code);
        if let Some(nsn) = e164.strip_prefix(&cc) {
            terms.push(format!("{}{nsn}", country.trunk_prefix));
        }
    }
    Some(terms)
}

/// The SOSL caller look-up for L-1 / I-1: the number in every form, in phone fields, returning
/// what the matching rules need. `None` when the number cannot be normalised.
pub fn phone_search_sosl(
    number: &str,
    default_country: &str,
    scope: PhoneSearchScope,
) -> Option<String> {
    let terms = phone_terms(number, default_country)?;
    let find: Vec<String> = terms.iter().map(|t| escape_sosl(t)).collect();
    let mut returning = Vec::new();
    if scope.contacts {
        returning.push(
            "Contact(Id, Name, Phone, MobilePhone, AccountId, LastModifiedDate ORDER BY LastModifiedDate DESC)"
                .to_string(),
        );
    }
    if scope.accounts {
        let extra = if scope.person_accounts {
            ", IsPersonAccount, PersonContactId, PersonMobilePhone"
        } else {
            ""
        };
        returning.push(format!(
            "Account(Id, Name, Phone, LastModifiedDate{extra} ORDER BY LastModifiedDate DESC)"
        ));
    }
    if scope.leads {
        returning.push(
            "Lead(Id, Name, Company, Phone, MobilePhone, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC)"
                .to_string(),
        );
    }
    if returning.is_empty() {
        return None;
    }
    Some(format!(
        "FIND {{{}}} IN PHONE FIELDS RETURNING {}",
        find.join(" OR "),
        returning.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sosl_escapes_every_reserved_character() {
        assert_eq!(escape_sosl("+81312345678"), "\\+81312345678");
        assert_eq!(
            escape_sosl(r#"?&|!{}[]()^~*:\"'+-"#),
            r#"\?\&\|\!\{\}\[\]\(\)\^\~\*\:\\\"\'\+\-"#
        );
        assert_eq!(escape_sosl("03 1234"), "03 1234");
        assert_eq!(escape_sosl("山田"), "山田");
    }

    #[test]
    fn soql_escapes_quotes_and_backslashes() {
        assert_eq!(escape_soql(r"O'Brien\x"), r"O\'Brien\\x");
        assert_eq!(escape_soql("a\nb"), "a\\nb");
    }

    #[test]
    fn ids() {
        assert!(is_salesforce_id("0035g00000A1b2CAAR"));
        assert!(is_salesforce_id("0035g00000A1b2C"));
        assert!(!is_salesforce_id("003' OR Id != '"));
        assert!(!is_salesforce_id("003"));
    }

    #[test]
    fn phone_search() {
        let q = phone_search_sosl("03-1234-5678", "JP", PhoneSearchScope::default()).expect("sosl");
        assert!(
            q.starts_with("FIND {\\+81312345678 OR 0312345678} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, MobilePhone, AccountId, LastModifiedDate"),
            "{q}"
        );
        assert!(q.contains(
            "Lead(Id, Name, Company, Phone, MobilePhone, LastModifiedDate WHERE IsConverted = false"
        ));
        assert!(!q.contains("IsPersonAccount"));
        let q = phone_search_sosl(
            "+1 415 555 1212",
            "JP",
            PhoneSearchScope {
                person_accounts: true,
                ..Default::default()
            },
        )
        .expect("sosl");
        assert!(q.starts_with("FIND {\\+14155551212} IN"), "{q}");
        assert!(q.contains("IsPersonAccount, PersonContactId, PersonMobilePhone"));
        assert_eq!(
            phone_search_sosl("201", "JP", PhoneSearchScope::default()),
            None
        );
        assert_eq!(
            phone_search_sosl("anonymous", "JP", PhoneSearchScope::default()),
            None
        );
    }
}
