//! SOSL search: `GET search/?q=FIND {…} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone), …`
//! and `GET parameterizedSearch/?q=…` (docs/salesforce-api.md §2b).
//!
//! The search term is read with SOSL's escapes (`\+81…` for a leading `+`); matching is
//! phone-aware in PHONE and ALL scopes (see [`crate::phone`]), word-based otherwise
//! (case-insensitive whole words, `*` / `?` wildcards, quoted phrases, AND/OR/AND NOT; text
//! with non-ASCII characters — Japanese names — matches as a substring, as CJK has no word
//! breaks). Results come in RETURNING order, each object's rows in creation order unless the
//! RETURNING clause has an ORDER BY; at most 2,000 rows in all.

use crate::errors::ApiError;
use crate::json::J;
use crate::org::OrgData;
use crate::phone;
use crate::rest::RestCtx;
use crate::schema::{FieldType, ObjectDef};
use crate::soql::ast::{Expr, FieldPath, OrderItem, SelectItem};
use crate::soql::eval::{self, Env};
use crate::soql::lexer::{self, Pos, Tok};
use crate::soql::parser::Parser;
use crate::store::Record;

const MAX_ROWS: u64 = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Name,
    Email,
    Phone,
    Sidebar,
}

/// One word of the term.
#[derive(Clone, Debug, PartialEq)]
struct Word {
    text: String,
    /// Ends with an unescaped `*`.
    prefix: bool,
    /// Preceded by NOT / AND NOT.
    negated: bool,
    /// Was a quoted phrase.
    phrase: bool,
}

/// The term: OR of AND-groups of words.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    groups: Vec<Vec<Word>>,
    raw: String,
}

#[derive(Debug)]
struct Returning {
    object: String,
    pos: Pos,
    fields: Vec<SelectItem>,
    filter: Option<Expr>,
    order_by: Vec<OrderItem>,
    limit: Option<u64>,
    offset: Option<u64>,
}

#[derive(Debug)]
struct Search {
    term: Term,
    scope: Scope,
    returning: Vec<Returning>,
    limit: Option<u64>,
}

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "MALFORMED_SEARCH", message)
}

/// Splits the inside of `{…}` into words, resolving backslash escapes
/// (SFDOC `sforce_api_calls_sosl_examples.htm`: `? & | ! { } [ ] ( ) ^ ~ * : \ " ' + -`).
fn parse_term(inner: &str) -> Term {
    let mut groups: Vec<Vec<Word>> = vec![Vec::new()];
    let mut negate_next = false;
    let mut cur = String::new();
    let mut prefix = false;
    let mut in_quotes = false;
    let mut phrase = false;
    let mut chars = inner.chars().peekable();
    let flush = |cur: &mut String,
                 prefix: &mut bool,
                 phrase: &mut bool,
                 negate_next: &mut bool,
                 groups: &mut Vec<Vec<Word>>| {
        if cur.is_empty() {
            return;
        }
        let word = std::mem::take(cur);
        if !*phrase {
            match word.as_str() {
                "OR" | "or" => {
                    groups.push(Vec::new());
                    *prefix = false;
                    return;
                }
                "AND" | "and" => {
                    *prefix = false;
                    return;
                }
                "NOT" | "not" => {
                    *negate_next = true;
                    *prefix = false;
                    return;
                }
                _ => {}
            }
        }
        if let Some(g) = groups.last_mut() {
            g.push(Word {
                text: word,
                prefix: *prefix,
                negated: *negate_next,
                phrase: *phrase,
            });
        }
        *prefix = false;
        *phrase = false;
        *negate_next = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                if in_quotes {
                    in_quotes = false;
                    phrase = true;
                    flush(
                        &mut cur,
                        &mut prefix,
                        &mut phrase,
                        &mut negate_next,
                        &mut groups,
                    );
                } else {
                    flush(
                        &mut cur,
                        &mut prefix,
                        &mut phrase,
                        &mut negate_next,
                        &mut groups,
                    );
                    in_quotes = true;
                }
            }
            '*' if !in_quotes => prefix = true,
            '?' if !in_quotes => cur.push('?'),
            c if c.is_whitespace() && !in_quotes => {
                flush(
                    &mut cur,
                    &mut prefix,
                    &mut phrase,
                    &mut negate_next,
                    &mut groups,
                );
            }
            c => cur.push(c),
        }
    }
    if in_quotes {
        phrase = true;
    }
    flush(
        &mut cur,
        &mut prefix,
        &mut phrase,
        &mut negate_next,
        &mut groups,
    );
    groups.retain(|g| !g.is_empty());
    Term {
        groups,
        raw: inner.to_string(),
    }
}

/// Finds the `{…}` term (an escaped `}` does not end it); returns it and the offset after.
fn braces(q: &str, from: usize) -> Option<(String, usize)> {
    let rest = q.get(from..)?;
    let open = rest.find(|c: char| !c.is_whitespace())?;
    if !rest[open..].starts_with('{') {
        return None;
    }
    let mut escaped = false;
    for (i, c) in rest[open + 1..].char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '}' => {
                let inner = rest[open + 1..open + 1 + i].to_string();
                return Some((inner, from + open + 1 + i + 1));
            }
            _ => {}
        }
    }
    None
}

fn parse_search(q: &str) -> Result<Search, ApiError> {
    let trimmed_start = q.len() - q.trim_start().len();
    let head = q.get(trimmed_start..trimmed_start + 4).unwrap_or("");
    if !head.eq_ignore_ascii_case("FIND") {
        let word = q.split_whitespace().next().unwrap_or("<EOF>");
        return Err(malformed(format!("unexpected token: {word}")));
    }
    let (inner, after) = braces(q, trimmed_start + 4).ok_or_else(|| {
        malformed("No search term found. The search term must be enclosed in braces.")
    })?;
    let term = parse_term(&inner);
    let significant: usize = term
        .groups
        .iter()
        .flatten()
        .map(|w| w.text.chars().filter(|c| *c != '?').count())
        .sum();
    if significant < 2 {
        return Err(ApiError::new(
            400,
            "INVALID_SEARCH",
            format!("search term must be longer than one character: {inner}"),
        ));
    }
    let toks = lexer::tokenize_from(q, after).map_err(|e| malformed(e.message))?;
    let mut p = Parser::new(toks);
    let perr = |e: crate::soql::parser::ParseError| malformed(e.message);
    let mut scope = Scope::All;
    if p.eat_kw("IN") {
        scope = if p.eat_kw("ALL") {
            Scope::All
        } else if p.eat_kw("NAME") {
            Scope::Name
        } else if p.eat_kw("EMAIL") {
            Scope::Email
        } else if p.eat_kw("PHONE") {
            Scope::Phone
        } else if p.eat_kw("SIDEBAR") {
            Scope::Sidebar
        } else {
            return Err(perr(p.unexpected()));
        };
        p.expect_kw("FIELDS").map_err(perr)?;
    }
    let mut returning = Vec::new();
    if p.eat_kw("RETURNING") {
        loop {
            let t = p.next();
            let Tok::Ident(object) = t.tok else {
                return Err(malformed(format!("unexpected token: {}", t.tok)));
            };
            let mut r = Returning {
                object,
                pos: t.pos,
                fields: Vec::new(),
                filter: None,
                order_by: Vec::new(),
                limit: None,
                offset: None,
            };
            if p.peek().tok == Tok::LParen {
                p.next();
                r.fields = p.parse_select_list().map_err(perr)?;
                if p.eat_kw("WHERE") {
                    r.filter = Some(p.parse_expr().map_err(perr)?);
                }
                if p.is_kw("ORDER") {
                    r.order_by = p.parse_order_by().map_err(perr)?;
                }
                if p.eat_kw("LIMIT") {
                    r.limit = Some(count(&mut p)?);
                }
                if p.eat_kw("OFFSET") {
                    r.offset = Some(count(&mut p)?);
                }
                p.expect(Tok::RParen).map_err(perr)?;
            }
            returning.push(r);
            if p.peek().tok == Tok::Comma {
                p.next();
            } else {
                break;
            }
        }
    }
    if p.is_kw("WITH") {
        return Err(malformed("sf-standin does not support WITH in SOSL"));
    }
    let limit = if p.eat_kw("LIMIT") {
        Some(count(&mut p)?)
    } else {
        None
    };
    if !p.at_eof() {
        return Err(perr(p.unexpected()));
    }
    Ok(Search {
        term,
        scope,
        returning,
        limit,
    })
}

fn count(p: &mut Parser) -> Result<u64, ApiError> {
    let t = p.next();
    match t.tok {
        Tok::Num(n) => n
            .parse()
            .map_err(|_| malformed(format!("unexpected token: {n}"))),
        other => Err(malformed(format!("unexpected token: {other}"))),
    }
}

// ---- matching ----------------------------------------------------------------------------

fn word_matches_text(w: &Word, text: &str) -> bool {
    let hay = text.to_lowercase();
    let needle = w.text.to_lowercase();
    if w.phrase || !needle.is_ascii() {
        return hay.contains(&needle);
    }
    // A word with punctuation (an e-mail address, "O'Brien") is the sequence of its parts.
    let tokens = |s: &str| -> Vec<Vec<char>> {
        s.split(|c: char| !(c.is_alphanumeric() || c == '?'))
            .filter(|t| !t.is_empty())
            .map(|t| t.chars().collect())
            .collect()
    };
    let q = tokens(&needle);
    let t = tokens(&hay);
    if q.is_empty() || q.len() > t.len() {
        return false;
    }
    let eq = |a: &[char], b: &[char]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *y == '?' || x == y)
    };
    t.windows(q.len()).any(|win| {
        win.iter().zip(&q).enumerate().all(|(i, (tok, want))| {
            if w.prefix && i + 1 == q.len() {
                tok.len() >= want.len() && eq(&tok[..want.len()], want)
            } else {
                eq(tok, want)
            }
        })
    })
}

fn word_matches_phone(w: &Word, stored: &str) -> bool {
    let d = phone::digits(&w.text);
    if d.len() < 2 {
        return false;
    }
    if w.prefix {
        phone::starts_with(stored, &d)
    } else {
        phone::same_number(stored, &w.text)
    }
}

fn searched_fields(data: &OrgData, obj: &ObjectDef, scope: Scope) -> Vec<(String, FieldType)> {
    obj.fields
        .iter()
        .filter(|f| data.schema.field_visible(obj, f))
        .filter(|f| match scope {
            Scope::Phone => f.ftype == FieldType::Phone,
            Scope::Email => f.ftype == FieldType::Email,
            Scope::Name | Scope::Sidebar => f.name_field,
            Scope::All => {
                f.ftype.is_textual() && !matches!(f.ftype, FieldType::Id | FieldType::Reference)
            }
        })
        .map(|f| (f.name.clone(), f.ftype))
        .collect()
}

fn record_matches(
    data: &OrgData,
    rec: &Record,
    fields: &[(String, FieldType)],
    term: &Term,
    scope: Scope,
) -> bool {
    let values: Vec<(String, FieldType)> = fields
        .iter()
        .filter_map(|(f, t)| {
            data.store
                .value(rec, f)
                .as_str()
                .map(|s| (s.to_string(), *t))
        })
        .collect();
    let word_hits = |w: &Word| {
        values.iter().any(|(v, t)| {
            (*t == FieldType::Phone && word_matches_phone(w, v))
                || (scope != Scope::Phone && word_matches_text(w, v))
        })
    };
    term.groups.iter().any(|group| {
        if scope == Scope::Phone {
            // A phone term is one number, however it was spaced: "03 1234 5678".
            let positive: Vec<&Word> = group.iter().filter(|w| !w.negated).collect();
            let joined = Word {
                text: positive
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                prefix: positive.last().is_some_and(|w| w.prefix),
                negated: false,
                phrase: false,
            };
            let neg_hit = group.iter().filter(|w| w.negated).any(&word_hits);
            return !joined.text.is_empty() && word_hits(&joined) && !neg_hit;
        }
        group.iter().all(|w| word_hits(w) != w.negated)
    })
}

// ---- execution ---------------------------------------------------------------------------

fn run_search(data: &OrgData, ctx: &RestCtx, q: &str, s: &Search) -> Result<Vec<J>, ApiError> {
    let env = Env {
        data,
        version: &ctx.version,
        now: ctx.now,
        all_rows: false,
        src: q,
    };
    let mut targets: Vec<(&ObjectDef, &Returning)> = Vec::new();
    let default_returning: Vec<Returning>;
    let returning: &[Returning] = if s.returning.is_empty() {
        default_returning = data
            .schema
            .visible_objects()
            .filter(|o| o.searchable)
            .map(|o| Returning {
                object: o.name.clone(),
                pos: Pos::default(),
                fields: Vec::new(),
                filter: None,
                order_by: Vec::new(),
                limit: None,
                offset: None,
            })
            .collect();
        &default_returning
    } else {
        &s.returning
    };
    for r in returning {
        let obj = data
            .schema
            .visible_object(&r.object)
            .filter(|o| o.searchable)
            .ok_or_else(|| eval::unknown_object(q, r.pos, &r.object))?;
        targets.push((obj, r));
    }
    let overall = s.limit.unwrap_or(MAX_ROWS).min(MAX_ROWS) as usize;
    let mut out = Vec::new();
    for (obj, r) in targets {
        if out.len() >= overall {
            break;
        }
        let fields = searched_fields(data, obj, s.scope);
        let candidates: Vec<&Record> = data
            .store
            .iter_object(&obj.name, false)
            .filter(|rec| record_matches(data, rec, &fields, &s.term, s.scope))
            .collect();
        let select = if r.fields.is_empty() {
            vec![SelectItem::Field(FieldPath {
                path: "Id".to_string(),
                pos: Pos::default(),
            })]
        } else {
            r.fields.clone()
        };
        let rows = eval::run_on(
            &env,
            obj,
            &select,
            r.filter.as_ref(),
            &r.order_by,
            r.limit,
            r.offset,
            candidates,
        )?;
        let room = overall - out.len();
        out.extend(rows.into_iter().take(room));
    }
    Ok(out)
}

/// Wraps rows as the requested version expects: `{"searchRecords":[…]}`, or a bare array
/// before v36.0 (docs/salesforce-api.md §2b: "treat v36 or later as wrapped").
fn wrap(ctx: &RestCtx, rows: Vec<J>) -> J {
    if ctx.version_number() >= 36.0 {
        J::obj([("searchRecords", J::Arr(rows))])
    } else {
        J::Arr(rows)
    }
}

/// `GET search/?q=`.
pub fn search(data: &OrgData, ctx: &RestCtx, q: &str) -> Result<J, ApiError> {
    if q.trim().is_empty() {
        return Err(malformed(
            "No search term found. The search term must be enclosed in braces.",
        ));
    }
    let s = parse_search(q)?;
    Ok(wrap(ctx, run_search(data, ctx, q, &s)?))
}

/// `GET parameterizedSearch/?q=…&sobject=…&{Object}.fields=…&{Object}.limit=…&in=…`:
/// the same search without SOSL syntax (the term needs no escaping).
pub fn parameterized(
    data: &OrgData,
    ctx: &RestCtx,
    params: &[(String, String)],
) -> Result<J, ApiError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let q = get("q").unwrap_or("");
    if q.trim().chars().count() < 2 {
        return Err(ApiError::new(
            400,
            "INVALID_SEARCH",
            format!("search term must be longer than one character: {q}"),
        ));
    }
    let scope = match get("in").map(str::to_ascii_uppercase).as_deref() {
        None | Some("ALL") => Scope::All,
        Some("NAME") => Scope::Name,
        Some("EMAIL") => Scope::Email,
        Some("PHONE") => Scope::Phone,
        Some("SIDEBAR") => Scope::Sidebar,
        Some(other) => {
            return Err(ApiError::new(
                400,
                "INVALID_SEARCH_SCOPE",
                format!("invalid search scope: {other}"),
            ));
        }
    };
    let mut returning = Vec::new();
    for (k, v) in params {
        if k != "sobject" {
            continue;
        }
        let fields = get(&format!("{v}.fields"))
            .map(|f| {
                f.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        SelectItem::Field(FieldPath {
                            path: s.trim().to_string(),
                            pos: Pos::default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let limit = get(&format!("{v}.limit")).and_then(|l| l.parse().ok());
        returning.push(Returning {
            object: v.clone(),
            pos: Pos::default(),
            fields,
            filter: None,
            order_by: Vec::new(),
            limit,
            offset: None,
        });
    }
    let escaped: String = q
        .chars()
        .flat_map(|c| {
            let special = "?&|!{}[]()^~*:\\\"'+-".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect();
    let s = Search {
        term: parse_term(&escaped),
        scope,
        returning,
        limit: get("overallLimit").and_then(|l| l.parse().ok()),
    };
    Ok(wrap(ctx, run_search(data, ctx, q, &s)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_escapes_and_operators() {
        let t = parse_term("\\+81312345678");
        assert_eq!(t.groups[0][0].text, "+81312345678");
        let t = parse_term("Acme* OR \"Global Media\" AND NOT test");
        assert_eq!(t.groups.len(), 2);
        assert!(t.groups[0][0].prefix);
        assert!(t.groups[1][0].phrase);
        assert_eq!(t.groups[1][0].text, "Global Media");
        assert!(t.groups[1][1].negated);
    }

    #[test]
    fn parses_the_caller_lookup() {
        let s = parse_search(
            "FIND {\\+81312345678} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone), Lead(Id, Name, Company WHERE IsConverted = false ORDER BY Name LIMIT 5), Account LIMIT 10",
        )
        .expect("parses");
        assert_eq!(s.scope, Scope::Phone);
        assert_eq!(s.returning.len(), 3);
        assert_eq!(s.returning[1].limit, Some(5));
        assert!(s.returning[1].filter.is_some());
        assert_eq!(s.limit, Some(10));
        assert!(s.returning[2].fields.is_empty());
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_search("FIND 0312").expect_err("braces").code,
            "MALFORMED_SEARCH"
        );
        assert_eq!(
            parse_search("FIND {a}").expect_err("short").code,
            "INVALID_SEARCH"
        );
        assert_eq!(
            parse_search("SEEK {abc}").expect_err("find").code,
            "MALFORMED_SEARCH"
        );
        assert!(parse_search("FIND {abc} IN FOO FIELDS").is_err());
        assert!(parse_search("FIND {abc} RETURNING Contact(Id").is_err());
        assert!(parse_search("FIND {a\\}b} RETURNING Contact").is_ok());
    }

    #[test]
    fn word_matching() {
        let w = |t: &str, prefix: bool| Word {
            text: t.into(),
            prefix,
            negated: false,
            phrase: false,
        };
        assert!(word_matches_text(&w("acme", false), "Acme Corp"));
        assert!(!word_matches_text(&w("acm", false), "Acme Corp"));
        assert!(word_matches_text(&w("acm", true), "Acme Corp"));
        assert!(word_matches_text(&w("山田", false), "山田太郎"));
        assert!(word_matches_phone(
            &w("0312345678", false),
            "+81 3-1234-5678"
        ));
    }
}
