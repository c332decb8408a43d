//! Salesforce record ids: 15 case-sensitive characters plus a 3-character checksum suffix.
//!
//! The checksum matters: HEROKU `update-malformed-id.json` shows the real service answering
//! `MALFORMED_ID` for `a00B000000FSjVUIB1`, which differs from the valid `…IA1` only in the
//! suffix. So ids are generated with a correct suffix and every id that arrives is checked.

use std::sync::atomic::{AtomicU64, Ordering};

const SUFFIX_CHARS: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 3-character suffix for a 15-character id: for each 5-character chunk, a bit per
/// upper-case letter, mapped through `A..Z0..5`.
pub fn checksum(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(3);
    for chunk in 0..3 {
        let mut flags = 0usize;
        for j in 0..5 {
            if bytes
                .get(chunk * 5 + j)
                .is_some_and(|b| b.is_ascii_uppercase())
            {
                flags |= 1 << j;
            }
        }
        out.push(SUFFIX_CHARS[flags] as char);
    }
    out
}

/// Turns a 15- or 18-character id into its canonical 18-character form; `None` if it is not
/// a well-formed id (wrong length, non-alphanumeric, or an 18-character id whose suffix does
/// not match).
pub fn normalize(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(format!("{id}{}", checksum(id))),
        18 => {
            let (head, tail) = id.split_at(15);
            // The suffix is case-insensitive in Salesforce's own conversion routines.
            if checksum(head).eq_ignore_ascii_case(tail) {
                Some(format!("{head}{}", checksum(head)))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The key prefix (first three characters) of an id.
pub fn prefix(id: &str) -> &str {
    id.get(..3).unwrap_or("")
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn base62(mut n: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits).unwrap_or_default()
}

/// A fresh 18-character id with the given key prefix. Ids are unique within the process
/// (one counter for every org), which also keeps them unique across orgs.
pub fn generate(key_prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // "5g0" stands where a real id carries its pod/instance characters.
    let id15 = format!("{:.3}5g0{}", key_prefix, base62(n, 9));
    format!("{id15}{}", checksum(&id15))
}

/// A random id-shaped string with the given prefix (org ids, query locators): random rather
/// than sequential so that two stand-ins in one process never hand out the same org id.
pub fn random(key_prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let tail: String = (0..9)
        .map(|_| BASE62[rng.random_range(0..62)] as char)
        .collect();
    let id15 = format!("{:.3}5g0{tail}", key_prefix);
    format!("{id15}{}", checksum(&id15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_ids_have_valid_checksums() {
        for id in [
            "a00B000000FSjVUIA1",
            "001B000001Lp1FxIAJ",
            "001B000001Lp1G2IAJ",
            "005B0000008UC2PIAW",
            "0017Q00000EZlbyQAD",
            "01gB000003OCxSPIA1",
            "a01B0000009ZjAmIAK",
        ] {
            assert_eq!(normalize(id).as_deref(), Some(id), "{id}");
        }
    }

    #[test]
    fn recorded_malformed_id_is_rejected() {
        assert_eq!(normalize("a00B000000FSjVUIB1"), None);
    }

    #[test]
    fn fifteen_to_eighteen() {
        assert_eq!(
            normalize("001B000001Lp1Fx").as_deref(),
            Some("001B000001Lp1FxIAJ")
        );
        assert_eq!(normalize("001B000001Lp1F"), None);
        assert_eq!(normalize("001B000001Lp1F-"), None);
    }

    #[test]
    fn generated_ids_are_valid_and_unique() {
        let a = generate("003");
        let b = generate("003");
        assert_ne!(a, b);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("003"));
        assert_eq!(normalize(&a).as_deref(), Some(a.as_str()));
        let o = random("00D");
        assert_eq!(normalize(&o).as_deref(), Some(o.as_str()));
    }
}
