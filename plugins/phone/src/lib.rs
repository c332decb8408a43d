//! Phone-number normalisation shared by the host (phone-book look-ups) and the plugins
//! (matching a caller against CRM records).
//!
//! Why this exists (SPEC L-2): the products this one replaces failed to match numbers stored as
//! `03-1234-5678`, `(03) 1234 5678` or `+81 3 1234 5678` against the number the PBX presents.
//! Everything that compares phone numbers goes through [`normalize`], so the host and every
//! plugin agree on what "the same number" means.
//!
//! The rules, in order:
//!
//! 1. Full-width characters (`０-９`, `＋`, `（`, `）`, `－`, ideographic space) are folded to
//!    ASCII, because Japanese CRM data often carries them.
//! 2. Punctuation used as a separator is dropped: spaces, `-` and the other dashes (including
//!    `ー`, often typed for a dash in Japanese), `.`, `/`, `(` and `)`. Any other character (a
//!    letter, `#`, `*`, `,`) makes the input "not a phone number" and the result is `None`: an
//!    extension suffix like `x123` or a word cannot be matched reliably.
//! 3. A leading `+` (optionally followed by a trunk marker `(0)`, as in `+81 (0)3 1234 5678`)
//!    means the digits start with a country calling code.
//! 4. Otherwise a leading international access code — `00` everywhere, or the default country's
//!    own (`010` Japan, `011` North America, `0011` Australia, …) — also means the digits after
//!    it start with a calling code.
//! 5. Otherwise the number is national: the default country's trunk prefix (`0` in Japan, `1`
//!    in North America) is removed once and its calling code is put in front.
//! 6. The result is checked for length against the country's table entry (national significant
//!    number length), or against E.164's limits (at most 15 digits) for countries not in the
//!    table. Too short (an extension such as `201`) or too long gives `None`.
//!
//! The table of countries is [`COUNTRIES`]; add a row to support another default country.

/// One row of the numbering table used for national numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code, upper case ("JP").
    pub iso: &'static str,
    /// Country calling code without `+` ("81").
    pub calling_code: &'static str,
    /// Trunk (national) prefix dialled before national numbers ("0"); empty where the country
    /// has none or keeps it as part of the number (Italy, Spain).
    pub trunk_prefix: &'static str,
    /// The international access code dialled from this country ("010" in Japan), besides the
    /// almost universal `00`.
    pub international_prefix: &'static str,
    /// Shortest national significant number (digits after the calling code).
    pub min_nsn: usize,
    /// Longest national significant number.
    pub max_nsn: usize,
}

const fn c(
    iso: &'static str,
    calling_code: &'static str,
    trunk_prefix: &'static str,
    international_prefix: &'static str,
    min_nsn: usize,
    max_nsn: usize,
) -> Country {
    Country {
        iso,
        calling_code,
        trunk_prefix,
        international_prefix,
        min_nsn,
        max_nsn,
    }
}

/// The countries a tenant can use as its default country.
///
/// Lengths are national significant numbers (without trunk prefix), generous enough to cover
/// mobile, toll-free and geographic numbers (ITU-T E.164 national plans). Japan: 9 digits for
/// `03-1234-5678`-style and `0120-xxx-xxx` numbers, 10 for mobiles (`090-1234-5678`).
pub const COUNTRIES: &[Country] = &[
    c("JP", "81", "0", "010", 9, 10),
    c("US", "1", "1", "011", 10, 10),
    c("CA", "1", "1", "011", 10, 10),
    c("GB", "44", "0", "00", 7, 10),
    c("DE", "49", "0", "00", 6, 13),
    c("FR", "33", "0", "00", 9, 9),
    c("AU", "61", "0", "0011", 6, 10),
    c("NZ", "64", "0", "00", 8, 10),
    c("KR", "82", "0", "001", 8, 10),
    c("CN", "86", "0", "00", 9, 11),
    c("TW", "886", "0", "002", 8, 9),
    c("HK", "852", "", "001", 8, 8),
    c("SG", "65", "", "000", 8, 8),
    c("IN", "91", "0", "00", 10, 10),
    c("PH", "63", "0", "00", 8, 10),
    c("TH", "66", "0", "001", 8, 9),
    c("VN", "84", "0", "00", 9, 10),
    c("ID", "62", "0", "001", 8, 12),
    c("MY", "60", "0", "00", 8, 10),
    c("IT", "39", "", "00", 6, 11),
    c("ES", "34", "", "00", 9, 9),
    c("NL", "31", "0", "00", 9, 9),
    c("BE", "32", "0", "00", 8, 9),
    c("CH", "41", "0", "00", 9, 9),
    c("AT", "43", "0", "00", 4, 13),
    c("SE", "46", "0", "00", 7, 9),
    c("IE", "353", "0", "00", 7, 9),
    c("BR", "55", "0", "00", 10, 11),
    c("MX", "52", "", "00", 10, 10),
];

/// Shortest and longest E.164 number (calling code + national number) accepted for calling
/// codes not in [`COUNTRIES`]. E.164 caps numbers at 15 digits; fewer than 7 is a short code or
/// an extension, never a full number.
const E164_MIN: usize = 7;
const E164_MAX: usize = 15;

/// Looks a country up by ISO code (case-insensitive).
pub fn country(iso: &str) -> Option<&'static Country> {
    let iso = iso.trim();
    COUNTRIES.iter().find(|c| c.iso.eq_ignore_ascii_case(iso))
}

/// The country rows whose calling code starts `digits` (several for `1`: US and Canada share
/// the plan, and they share one row's rules).
fn country_by_calling_code(digits: &str) -> Option<&'static Country> {
    // Calling codes are prefix-free, so the first row that matches is the one.
    COUNTRIES
        .iter()
        .find(|c| digits.starts_with(c.calling_code))
}

/// Folds one character to its ASCII digit, if it is a digit (ASCII or full-width).
fn ascii_digit(ch: char) -> Option<char> {
    match ch {
        '0'..='9' => Some(ch),
        '０'..='９' => char::from_u32(u32::from(ch) - u32::from('０') + u32::from('0')),
        _ => None,
    }
}

/// Separators people put into phone numbers; they carry no meaning.
fn is_separator(ch: char) -> bool {
    matches!(
        ch,
        ' ' | '\t' | '\u{a0}' | '\u{3000}' | '-' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2212}'
                | '\u{30fc}'
                | '\u{ff0d}'
                | '\u{ff70}'
                | '.'
                | '\u{ff0e}'
                | '/'
                | '\u{ff0f}'
    )
}

fn is_open_paren(ch: char) -> bool {
    matches!(ch, '(' | '\u{ff08}')
}

fn is_close_paren(ch: char) -> bool {
    matches!(ch, ')' | '\u{ff09}')
}

fn is_plus(ch: char) -> bool {
    matches!(ch, '+' | '\u{ff0b}')
}

/// The digits of `number` in order, full-width digits folded to ASCII, everything else dropped.
///
/// Useful for logging and for loose comparisons; [`normalize`] is what decides equality.
pub fn digits(number: &str) -> String {
    number.chars().filter_map(ascii_digit).collect()
}

/// A number after lexing: its digits, whether it was written with `+`, and whether a `(0)`
/// trunk marker followed the calling code.
struct Lexed {
    digits: String,
    plus: bool,
    /// Number of digits that preceded a `(0)` group, when there was one.
    trunk_marker_at: Option<usize>,
}

fn lex(number: &str) -> Option<Lexed> {
    let mut out = Lexed {
        digits: String::with_capacity(number.len()),
        plus: false,
        trunk_marker_at: None,
    };
    let chars: Vec<char> = number.trim().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if let Some(d) = ascii_digit(ch) {
            out.digits.push(d);
        } else if is_plus(ch) {
            // `+` only makes sense as the very first thing.
            if out.plus || !out.digits.is_empty() {
                return None;
            }
            out.plus = true;
        } else if is_open_paren(ch) {
            // `(0)` right after an international prefix is the trunk marker of
            // "+44 (0)20 ..." / "+81 (0)3 ..."; other parentheses are separators.
            let is_zero_group = chars.get(i + 1).and_then(|c| ascii_digit(*c)) == Some('0')
                && chars.get(i + 2).copied().is_some_and(is_close_paren);
            if is_zero_group && out.plus && !out.digits.is_empty() {
                out.trunk_marker_at = Some(out.digits.len());
                i += 3;
                continue;
            }
        } else if is_close_paren(ch) || is_separator(ch) {
            // dropped
        } else {
            // Letters, `#`, `*`, `,`, `;`, anything else: not a plain phone number.
            return None;
        }
        i += 1;
    }
    Some(out)
}

/// Builds `+<digits>` after checking the length, stripping a trunk prefix written after the
/// calling code (`+81 03 ...`) when the country has one.
fn international(digits: &str, trunk_marker_at: Option<usize>) -> Option<String> {
    match country_by_calling_code(digits) {
        Some(country) => {
            let mut nsn = &digits[country.calling_code.len()..];
            if let Some(at) = trunk_marker_at {
                // A `(0)` that sits anywhere but right after the calling code is not a marker
                // we understand.
                if at != country.calling_code.len() {
                    return None;
                }
            }
            // "+81 03 1234 5678": people keep the national trunk prefix after the code. In
            // every table country whose trunk prefix is `0`, no national significant number
            // starts with 0; for others, strip it only when the number is otherwise too long.
            let trunk = country.trunk_prefix;
            if !trunk.is_empty()
                && nsn.starts_with(trunk)
                && (trunk == "0" || nsn.len() > country.max_nsn)
            {
                nsn = &nsn[country.trunk_prefix.len()..];
            }
            if nsn.len() < country.min_nsn || nsn.len() > country.max_nsn {
                return None;
            }
            Some(format!("+{}{}", country.calling_code, nsn))
        }
        None => {
            if digits.len() < E164_MIN || digits.len() > E164_MAX || digits.starts_with('0') {
                return None;
            }
            Some(format!("+{digits}"))
        }
    }
}

/// Normalises a phone number to E.164 (`+81312345678`).
///
/// `default_country` (ISO 3166 alpha-2, e.g. "JP") gives the country of numbers written in
/// national form; it must be in [`COUNTRIES`] for national numbers to normalise. Returns
/// `None` when the input is not a complete phone number: letters or other symbols, too few or
/// too many digits, or a national number with an unknown default country.
///
/// ```
/// assert_eq!(pbx_phone::normalize("03-1234-5678", "JP").as_deref(), Some("+81312345678"));
/// assert_eq!(pbx_phone::normalize("+81 (0)3 1234 5678", "US").as_deref(), Some("+81312345678"));
/// assert_eq!(pbx_phone::normalize("(415) 555-1212", "US").as_deref(), Some("+14155551212"));
/// assert_eq!(pbx_phone::normalize("201", "JP"), None);
/// ```
pub fn normalize(number: &str, default_country: &str) -> Option<String> {
    let lexed = lex(number)?;
    let digits = lexed.digits.as_str();
    if digits.is_empty() {
        return None;
    }
    if lexed.plus {
        return international(digits, lexed.trunk_marker_at);
    }
    let home = country(default_country);
    // International access codes: the home country's own first (it may be longer than "00",
    // as Australia's "0011"), then "00", understood nearly everywhere.
    let mut idds: Vec<&str> = Vec::with_capacity(2);
    if let Some(h) = home {
        idds.push(h.international_prefix);
    }
    idds.push("00");
    for idd in idds {
        if let Some(rest) = digits.strip_prefix(idd)
            && !rest.is_empty()
            && !rest.starts_with('0')
        {
            return international(rest, None);
        }
    }
    let home = home?;
    let mut nsn = digits;
    if !home.trunk_prefix.is_empty()
        && let Some(rest) = nsn.strip_prefix(home.trunk_prefix)
        && rest.len() >= home.min_nsn
    {
        nsn = rest;
    }
    if nsn.len() < home.min_nsn || nsn.len() > home.max_nsn {
        return None;
    }
    // A national number never starts with the trunk prefix once it is removed ("00..." was an
    // international code we did not recognise).
    if !home.trunk_prefix.is_empty() && nsn.starts_with('0') && home.trunk_prefix == "0" {
        return None;
    }
    Some(format!("+{}{}", home.calling_code, nsn))
}

/// Whether two numbers are the same phone number.
///
/// Both are normalised with `default_country`; if either cannot be (an extension such as
/// "201", a short code), they are equal only when their digits are identical and non-empty,
/// so extensions still compare sensibly.
pub fn same_number(a: &str, b: &str, default_country: &str) -> bool {
    match (normalize(a, default_country), normalize(b, default_country)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => {
            let (da, db) = (digits(a), digits(b));
            !da.is_empty() && da == db && lex(a).is_some() && lex(b).is_some()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jp(n: &str) -> Option<String> {
        normalize(n, "JP")
    }

    #[test]
    fn japanese_national_forms() {
        let want = Some("+81312345678".to_string());
        for n in [
            "03-1234-5678",
            "(03) 1234 5678",
            "0312345678",
            "03 1234 5678",
            "03.1234.5678",
            "03(1234)5678",
            " 03-1234-5678 ",
            "03ー1234ー5678",
            "03－1234－5678",
            "03‐1234‐5678",
            "03−1234−5678",
        ] {
            assert_eq!(jp(n), want, "{n}");
        }
    }

    #[test]
    fn japanese_international_forms() {
        let want = Some("+81312345678".to_string());
        for n in [
            "+81 3 1234 5678",
            "+81-3-1234-5678",
            "+81 (0)3 1234 5678",
            "+81(0)312345678",
            "+81312345678",
            "+81 03 1234 5678",
            "0081312345678",
            "00 81 3 1234 5678",
            "01081312345678",
            "＋８１３１２３４５６７８",
        ] {
            assert_eq!(jp(n), want, "{n}");
        }
        // International forms do not depend on the default country.
        assert_eq!(normalize("+81 3 1234 5678", "US"), want);
        assert_eq!(normalize("+81 3 1234 5678", "ZZ"), want);
        assert_eq!(normalize("0081312345678", "GB"), want);
    }

    #[test]
    fn full_width_digits() {
        assert_eq!(
            jp("０３－１２３４－５６７８").as_deref(),
            Some("+81312345678")
        );
        assert_eq!(
            jp("０３（１２３４）５６７８").as_deref(),
            Some("+81312345678")
        );
        assert_eq!(
            jp("０３\u{3000}１２３４\u{3000}５６７８").as_deref(),
            Some("+81312345678")
        );
    }

    #[test]
    fn japanese_mobile_and_toll_free() {
        assert_eq!(jp("090-1234-5678").as_deref(), Some("+819012345678"));
        assert_eq!(jp("+81 90 1234 5678").as_deref(), Some("+819012345678"));
        assert_eq!(jp("0120-123-456").as_deref(), Some("+81120123456"));
        assert_eq!(jp("050-1234-5678").as_deref(), Some("+815012345678"));
        assert_eq!(jp("06-6123-4567").as_deref(), Some("+81661234567"));
    }

    #[test]
    fn north_america() {
        let want = Some("+14155551212".to_string());
        for n in [
            "(415) 555-1212",
            "415-555-1212",
            "415.555.1212",
            "4155551212",
            "1-415-555-1212",
            "1 (415) 555 1212",
            "+1 415 555 1212",
            "011 1 415 555 1212",
            "+1 (415) 555-1212",
        ] {
            assert_eq!(normalize(n, "US"), want, "{n}");
        }
        assert_eq!(normalize("4155551212", "us"), want, "lower-case ISO code");
        assert_eq!(normalize("+1 415 555 1212", "JP"), want);
        assert_eq!(normalize("010 1 415 555 1212", "JP"), want);
        assert_eq!(
            normalize("555-1212", "US"),
            None,
            "7-digit local numbers are incomplete"
        );
    }

    #[test]
    fn other_countries() {
        assert_eq!(
            normalize("020 7946 0958", "GB").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            normalize("+44 (0)20 7946 0958", "JP").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            normalize("030 1234567", "DE").as_deref(),
            Some("+49301234567")
        );
        assert_eq!(
            normalize("01 23 45 67 89", "FR").as_deref(),
            Some("+33123456789")
        );
        assert_eq!(
            normalize("(02) 9876 5432", "AU").as_deref(),
            Some("+61298765432")
        );
        assert_eq!(
            normalize("0011 81 3 1234 5678", "AU").as_deref(),
            Some("+81312345678")
        );
        assert_eq!(
            normalize("06 1234 5678", "IT").as_deref(),
            Some("+390612345678")
        );
        assert_eq!(
            normalize("+39 06 1234 5678", "JP").as_deref(),
            Some("+390612345678")
        );
        assert_eq!(
            normalize("010-1234-5678", "KR").as_deref(),
            Some("+821012345678")
        );
    }

    #[test]
    fn unknown_calling_codes_pass_through_by_length() {
        // +971 (UAE) is not in the table: only E.164 limits apply.
        assert_eq!(
            normalize("+971 4 123 4567", "JP").as_deref(),
            Some("+97141234567")
        );
        assert_eq!(normalize("+971 4", "JP"), None);
        assert_eq!(normalize("+1234567890123456", "JP"), None, "over 15 digits");
    }

    #[test]
    fn rejects_non_numbers() {
        for n in [
            "",
            "   ",
            "abc",
            "03-1234-5678 ext 12",
            "03-1234-5678x12",
            "0312345678#",
            "*67 0312345678",
            "TEL:0312345678",
            "03-1234-567８a",
            "+",
            "++81312345678",
            "81+312345678",
            "anonymous",
            "非通知",
        ] {
            assert_eq!(jp(n), None, "{n:?}");
        }
    }

    #[test]
    fn rejects_too_few_or_too_many_digits() {
        assert_eq!(jp("201"), None, "an extension");
        assert_eq!(jp("110"), None, "a short code");
        assert_eq!(jp("1234-5678"), None, "no area code");
        assert_eq!(jp("03-1234-56789-0"), None);
        assert_eq!(jp("+81 3"), None);
        assert_eq!(jp("+81 3 1234 5678 9012"), None);
        assert_eq!(jp("0000000000"), None);
    }

    #[test]
    fn national_numbers_need_a_known_default_country() {
        assert_eq!(normalize("03-1234-5678", "ZZ"), None);
        assert_eq!(normalize("03-1234-5678", ""), None);
    }

    #[test]
    fn digits_keeps_only_digits() {
        assert_eq!(digits("+81 (0)3-1234-5678"), "810312345678");
        assert_eq!(digits("０３－１２"), "0312");
        assert_eq!(digits("abc"), "");
    }

    #[test]
    fn same_number_across_formats() {
        assert!(same_number("03-1234-5678", "+81 3 1234 5678", "JP"));
        assert!(same_number("(03) 1234 5678", "0081312345678", "JP"));
        assert!(same_number("０３１２３４５６７８", "+81-3-1234-5678", "JP"));
        assert!(!same_number("03-1234-5678", "03-1234-5679", "JP"));
        assert!(!same_number("03-1234-5678", "+1 312 345 678", "JP"));
        assert!(
            same_number("201", "201", "JP"),
            "extensions compare by digits"
        );
        assert!(!same_number("201", "202", "JP"));
        assert!(!same_number("", "", "JP"));
        assert!(!same_number("abc", "abc", "JP"));
        assert!(!same_number("201", "03-1234-5678", "JP"));
    }

    #[test]
    fn table_is_consistent() {
        for c in COUNTRIES {
            assert_eq!(c.iso.len(), 2, "{c:?}");
            assert!(c.min_nsn <= c.max_nsn, "{c:?}");
            assert!(c.calling_code.len() + c.max_nsn <= E164_MAX, "{c:?}");
            assert!(c.calling_code.chars().all(|d| d.is_ascii_digit()), "{c:?}");
            assert_eq!(country(c.iso).map(|x| x.iso), Some(c.iso));
        }
        // Calling codes must be prefix-free, except rows sharing one code (NANP).
        for a in COUNTRIES {
            for b in COUNTRIES {
                if a.calling_code != b.calling_code {
                    assert!(!b.calling_code.starts_with(a.calling_code), "{a:?} {b:?}");
                }
            }
        }
    }
}
