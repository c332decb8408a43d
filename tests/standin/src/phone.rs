//! Phone-number matching for SOSL `IN PHONE FIELDS`.
//!
//! How the real service tokenises phone numbers is [UNCONFIRMED] (docs/salesforce-api.md §2b);
//! SPEC L-2 requires that "03-1234-5678", "(03) 1234 5678", "0312345678", "+81 3 1234 5678"
//! and "+81-3-1234-5678" all find each other. The rule here:
//!
//! 1. Strip every non-digit.
//! 2. Drop an international call prefix in front of a country code of the table (`00`,
//!    `010` as dialled from Japan, `011` from North America): `0081…`, `01081…` -> `81…`.
//! 3. Turn the number into its set of E.164 spellings (digits, no `+`):
//!    - itself;
//!    - a national number with the trunk prefix `0` is read as a number of the stand-in's
//!      home country, Japan: `0312345678` -> `81312345678` (national significant number of
//!      9–10 digits);
//!    - a 10-digit number not starting with 0 or 1 is also read as a North American national
//!      number: `4155551212` -> `14155551212`;
//!    - an international number written with its trunk digit in brackets, `+81 (0)3 …`, also
//!      without it.
//! 4. Two numbers match if their sets share a spelling.
//!
//! A national number is never read as another country's (`0312345678` does not match
//! `+44 3 1234 5678`): without a country context that would match unrelated numbers.

/// (country code, trunk prefix): used for international-prefix stripping and for the
/// `+CC (0)…` spelling.
const COUNTRIES: &[(&str, &str)] = &[
    ("81", "0"),  // Japan (home country)
    ("1", ""),    // NANP
    ("44", "0"),  // United Kingdom
    ("49", "0"),  // Germany
    ("33", "0"),  // France
    ("39", ""),   // Italy (the 0 stays in E.164)
    ("61", "0"),  // Australia
    ("64", "0"),  // New Zealand
    ("82", "0"),  // South Korea
    ("86", "0"),  // China
    ("852", ""),  // Hong Kong
    ("886", "0"), // Taiwan
    ("65", ""),   // Singapore
    ("91", "0"),  // India
    ("66", "0"),  // Thailand
    ("63", "0"),  // Philippines
];

/// The home country national numbers belong to: Japan, the seeds' market.
const HOME_CC: &str = "81";
const HOME_TRUNK: &str = "0";
const HOME_NSN: std::ops::RangeInclusive<usize> = 9..=10;

const INTL_PREFIXES: &[&str] = &["010", "011", "00"];

/// The digits of a phone number as written.
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Digits with an international call prefix before a known country code removed.
fn strip_intl(d: &str) -> &str {
    for p in INTL_PREFIXES {
        if let Some(rest) = d.strip_prefix(p)
            && rest.len() >= 8
            && COUNTRIES.iter().any(|(cc, _)| rest.starts_with(cc))
        {
            return rest;
        }
    }
    d
}

/// The E.164 spellings (digits only) of a number's digits.
pub fn e164_forms(d: &str) -> Vec<String> {
    let d = strip_intl(d);
    let mut out = vec![d.to_string()];
    if let Some(nsn) = d.strip_prefix(HOME_TRUNK)
        && HOME_NSN.contains(&nsn.len())
        && !nsn.starts_with('0')
    {
        out.push(format!("{HOME_CC}{nsn}"));
    }
    if d.len() == 10 && !d.starts_with('0') && !d.starts_with('1') {
        out.push(format!("1{d}"));
    }
    for (cc, trunk) in COUNTRIES {
        if trunk.is_empty() {
            continue;
        }
        if let Some(nsn) = d.strip_prefix(cc).and_then(|r| r.strip_prefix(trunk))
            && nsn.len() >= 6
        {
            out.push(format!("{cc}{nsn}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// E.164 spellings plus the home-country national spelling (for prefix searches).
fn all_forms(d: &str) -> Vec<String> {
    let mut out = e164_forms(d);
    let national: Vec<String> = out
        .iter()
        .filter_map(|f| f.strip_prefix(HOME_CC))
        .map(|nsn| format!("{HOME_TRUNK}{nsn}"))
        .collect();
    out.extend(national);
    out
}

/// Whether two written numbers are the same number.
pub fn same_number(a: &str, b: &str) -> bool {
    let (da, db) = (digits(a), digits(b));
    if da.is_empty() || db.is_empty() {
        return false;
    }
    let fa = e164_forms(&da);
    let fb = e164_forms(&db);
    fa.iter().any(|x| fb.contains(x))
}

/// Whether a stored number starts with the digits of a wildcard term (`0312*`).
pub fn starts_with(stored: &str, prefix_digits: &str) -> bool {
    let p = strip_intl(prefix_digits);
    if p.is_empty() {
        return false;
    }
    let mut prefixes = vec![p.to_string()];
    if let Some(rest) = p.strip_prefix(HOME_TRUNK) {
        prefixes.push(format!("{HOME_CC}{rest}"));
    }
    all_forms(&digits(stored))
        .iter()
        .any(|s| prefixes.iter().any(|p| s.starts_with(p.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_formats_all_match() {
        let stored = [
            "03-1234-5678",
            "(03) 1234 5678",
            "0312345678",
            "03 1234 5678",
            "+81 3 1234 5678",
            "+81-3-1234-5678",
            "+81 (0)3 1234 5678",
            "0081312345678",
            "010-81-3-1234-5678",
        ];
        for s in stored {
            for q in ["0312345678", "+81312345678", "81312345678", "03-1234-5678"] {
                assert!(same_number(s, q), "{s} vs {q}");
            }
        }
        assert!(same_number("090-1234-5678", "+81 90 1234 5678"));
    }

    #[test]
    fn different_numbers_do_not_match() {
        assert!(!same_number("03-1234-5678", "03-1234-5679"));
        assert!(!same_number("0312345678", "+44312345678"));
        assert!(!same_number("", ""));
        assert!(!same_number("1234", "81234"));
        assert!(!same_number("+81 3 1234 5678", "+81 6 1234 5678"));
    }

    #[test]
    fn north_america() {
        assert!(same_number("(415) 555-1212", "+1 415 555 1212"));
        assert!(same_number("1-415-555-1212", "4155551212"));
    }

    #[test]
    fn prefixes() {
        assert!(starts_with("+81 3 1234 5678", "0312"));
        assert!(starts_with("03-1234-5678", "81312"));
        assert!(!starts_with("06-1234-5678", "0312"));
    }
}
