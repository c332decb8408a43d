//! Resolves a parsed SOQL query against the org's schema (INVALID_FIELD / INVALID_TYPE with
//! Salesforce's caret messages) and runs it over the org's records, producing record JSON in
//! the recorded shape (docs/salesforce-api.md §0 "Record JSON", §2a).

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};
use serde_json::Value;

use super::ast::*;
use super::lexer::Pos;
use crate::errors::ApiError;
use crate::ids;
use crate::json::J;
use crate::org::OrgData;
use crate::schema::{FieldDef, FieldType, ObjectDef};
use crate::store::{Record, Store};

/// What a query runs against.
pub struct Env<'a> {
    pub data: &'a OrgData,
    /// `53.0`: used in `attributes.url`.
    pub version: &'a str,
    pub now: DateTime<Utc>,
    /// queryAll: include deleted records.
    pub all_rows: bool,
    /// The query text, for caret error messages.
    pub src: &'a str,
}

/// Rows of a query, already shaped as response records.
#[derive(Debug)]
pub struct Output {
    pub total_size: usize,
    pub records: Vec<J>,
}

/// The error message format of the recording `query-unknown-column.json`:
/// `\n<query line(s)>\n<spaces>^\nERROR at Row:r:Column:c\n<message>`.
pub fn caret_message(src: &str, pos: Pos, message: &str) -> String {
    let lines: Vec<&str> = src.lines().take(pos.row.max(1)).collect();
    format!(
        "\n{}\n{}^\nERROR at Row:{}:Column:{}\n{}",
        lines.join("\n"),
        " ".repeat(pos.col.saturating_sub(1)),
        pos.row,
        pos.col,
        message
    )
}

fn caret(env: &Env<'_>, code: &str, pos: Pos, message: &str) -> ApiError {
    ApiError::new(400, code, caret_message(env.src, pos, message))
}

fn no_such_column(env: &Env<'_>, pos: Pos, field: &str, entity: &str) -> ApiError {
    caret(
        env,
        "INVALID_FIELD",
        pos,
        &format!(
            "No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

/// INVALID_TYPE for an unknown (or inaccessible) object, as the real service words it.
pub fn unknown_object(src: &str, pos: Pos, name: &str) -> ApiError {
    ApiError::new(
        400,
        "INVALID_TYPE",
        caret_message(
            src,
            pos,
            &format!(
                "sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
            ),
        ),
    )
}

// ---- resolution --------------------------------------------------------------------------

/// One hop through a lookup (`Owner` via `OwnerId`).
#[derive(Clone, Debug)]
struct Step {
    ref_field: String,
    rel_name: String,
}

/// A field path resolved to canonical names.
#[derive(Clone, Debug)]
pub struct Resolved {
    steps: Vec<Step>,
    field: FieldDef,
}

impl Resolved {
    /// Output keys: relationship names then the field name (`["Owner", "Name"]`).
    fn keys(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| s.rel_name.clone())
            .chain(std::iter::once(self.field.name.clone()))
            .collect()
    }
}

/// Resolves `Account.Owner.Name`-style paths from `base`. A leading segment naming the
/// object itself or its alias is dropped (`SELECT Account.Name FROM Account` selects `Name`,
/// HEROKU `query-with-subquery.json`).
pub fn resolve_path(
    env: &Env<'_>,
    base: &ObjectDef,
    alias: Option<&str>,
    fp: &FieldPath,
) -> Result<Resolved, ApiError> {
    let schema = &env.data.schema;
    let mut segs: Vec<&str> = fp.path.split('.').collect();
    if segs.len() > 1
        && (segs[0].eq_ignore_ascii_case(&base.name)
            || alias.is_some_and(|a| a.eq_ignore_ascii_case(segs[0])))
    {
        segs.remove(0);
    }
    let Some((last, rels)) = segs.split_last() else {
        return Err(no_such_column(env, fp.pos, &fp.path, &base.name));
    };
    let mut current: Vec<String> = vec![base.name.clone()];
    let mut steps = Vec::new();
    for seg in rels {
        let found = current.iter().find_map(|o| {
            let od = schema.visible_object(o)?;
            let f = od.field_by_relationship(seg)?;
            schema.field_visible(od, f).then(|| f.clone())
        });
        let Some(f) = found else {
            return Err(caret(
                env,
                "INVALID_FIELD",
                fp.pos,
                &format!(
                    "Didn't understand relationship '{seg}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            ));
        };
        current = schema
            .reference_targets(&f)
            .into_iter()
            .filter(|t| schema.visible_object(t).is_some())
            .collect();
        steps.push(Step {
            ref_field: f.name.clone(),
            rel_name: f.relationship_name.clone().unwrap_or_default(),
        });
    }
    let field = current.iter().find_map(|o| {
        let od = schema.visible_object(o)?;
        schema.visible_field(od, last).cloned()
    });
    match field {
        Some(field) => Ok(Resolved { steps, field }),
        None => Err(no_such_column(
            env,
            fp.pos,
            last,
            current.first().map(String::as_str).unwrap_or(&base.name),
        )),
    }
}

/// Reads a resolved path from a record, following lookups (a missing or deleted parent
/// gives null).
fn fetch(store: &Store, rec: &Record, r: &Resolved) -> Value {
    let mut cur = rec;
    for s in &r.steps {
        let Some(parent) = cur
            .get_str(&s.ref_field)
            .and_then(|id| store.get(id))
            .filter(|p| !p.is_deleted())
        else {
            return Value::Null;
        };
        cur = parent;
    }
    field_of(store, cur, &r.field.name)
}

/// A field of a record; for polymorphic lookups (`What.Name` on a Case) `Name` falls back to
/// the object's name field.
fn field_of(store: &Store, rec: &Record, field: &str) -> Value {
    let v = store.value(rec, field);
    if v.is_null()
        && field == "Name"
        && !rec.fields.contains_key("Name")
        && let Some(alt) = ["CaseNumber", "Subject"]
            .iter()
            .find(|f| rec.fields.contains_key(**f))
    {
        return store.value(rec, alt);
    }
    v
}

// ---- typed values ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum TV {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    Dt(DateTime<Utc>),
}

fn typed(ftype: FieldType, v: &Value) -> TV {
    match (ftype, v) {
        (_, Value::Null) => TV::Null,
        (FieldType::Date, Value::String(s)) => {
            crate::values::parse_date(s).map_or(TV::Null, TV::Date)
        }
        (FieldType::DateTime, Value::String(s)) => {
            crate::values::parse_datetime(s).map_or(TV::Null, TV::Dt)
        }
        (_, Value::String(s)) => TV::Str(s.clone()),
        (_, Value::Number(n)) => TV::Num(n.as_f64().unwrap_or(0.0)),
        (_, Value::Bool(b)) => TV::Bool(*b),
        _ => TV::Null,
    }
}

fn compare_tv(a: &TV, b: &TV) -> Option<Ordering> {
    match (a, b) {
        (TV::Str(x), TV::Str(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (TV::Num(x), TV::Num(y)) => x.partial_cmp(y),
        (TV::Bool(x), TV::Bool(y)) => Some(x.cmp(y)),
        (TV::Date(x), TV::Date(y)) => Some(x.cmp(y)),
        (TV::Dt(x), TV::Dt(y)) => Some(x.cmp(y)),
        (TV::Date(x), TV::Dt(y)) => Some(midnight(*x).cmp(y)),
        (TV::Dt(x), TV::Date(y)) => Some(x.cmp(&midnight(*y))),
        _ => None,
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// A checked right-hand side.
#[derive(Clone, Debug)]
enum Operand {
    Val(TV),
    /// Half-open range `[start, end)` of a relative date literal.
    Range(DateTime<Utc>, DateTime<Utc>),
}

/// `[start, end)` of a relative date literal, in UTC (the stand-in's org time zone).
/// LAST_N_DAYS:n runs from 00:00 n days ago to the end of today: SFDOC says it "includes
/// the current day" (docs/salesforce-api.md §2a marks the exact boundary [UNCONFIRMED]).
pub fn date_range(lit: DateLiteral, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.date_naive();
    let d = |n: i64| midnight(today + Duration::days(n));
    let week_start = today - Duration::days(i64::from(today.weekday().num_days_from_sunday()));
    let w = |n: i64| midnight(week_start + Duration::weeks(n));
    let month_start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let m = |n: i32| {
        let base = midnight(month_start);
        if n >= 0 {
            base.checked_add_months(Months::new(n as u32))
                .unwrap_or(base)
        } else {
            base.checked_sub_months(Months::new(n.unsigned_abs()))
                .unwrap_or(base)
        }
    };
    let y = |n: i32| midnight(NaiveDate::from_ymd_opt(today.year() + n, 1, 1).unwrap_or(today));
    let n64 = |n: u32| i64::from(n);
    match lit {
        DateLiteral::Yesterday => (d(-1), d(0)),
        DateLiteral::Today => (d(0), d(1)),
        DateLiteral::Tomorrow => (d(1), d(2)),
        DateLiteral::LastWeek => (w(-1), w(0)),
        DateLiteral::ThisWeek => (w(0), w(1)),
        DateLiteral::NextWeek => (w(1), w(2)),
        DateLiteral::LastMonth => (m(-1), m(0)),
        DateLiteral::ThisMonth => (m(0), m(1)),
        DateLiteral::NextMonth => (m(1), m(2)),
        DateLiteral::LastYear => (y(-1), y(0)),
        DateLiteral::ThisYear => (y(0), y(1)),
        DateLiteral::NextYear => (y(1), y(2)),
        DateLiteral::Last90Days => (d(-90), d(1)),
        DateLiteral::Next90Days => (d(1), d(91)),
        DateLiteral::LastNDays(n) => (d(-n64(n)), d(1)),
        DateLiteral::NextNDays(n) => (d(1), d(1 + n64(n))),
        DateLiteral::NDaysAgo(n) => (d(-n64(n)), d(1 - n64(n))),
        DateLiteral::LastNWeeks(n) => (w(-n64(n)), w(0)),
        DateLiteral::NextNWeeks(n) => (w(1), w(1 + n64(n))),
        DateLiteral::LastNMonths(n) => (m(-(n as i32)), m(0)),
        DateLiteral::NextNMonths(n) => (m(1), m(1 + n as i32)),
    }
}

fn type_word(f: &FieldDef) -> &'static str {
    match f.ftype {
        FieldType::Boolean => "boolean",
        FieldType::Int => "integer",
        FieldType::Double | FieldType::Currency => "double",
        FieldType::Date => "date",
        FieldType::DateTime => "dateTime",
        _ => "string",
    }
}

/// Checks a literal against the field's type, as the real service does before running
/// (`value of filter criterion for field 'X' must be of type …`).
fn check_literal(env: &Env<'_>, f: &FieldDef, lit: &Lit, pos: Pos) -> Result<Operand, ApiError> {
    let wrong = || {
        let quotes = if f.ftype.is_textual() {
            "should be enclosed in quotes"
        } else {
            "should not be enclosed in quotes"
        };
        caret(
            env,
            "INVALID_FIELD",
            pos,
            &format!(
                "value of filter criterion for field '{}' must be of type {} and {quotes}",
                f.name,
                type_word(f)
            ),
        )
    };
    if *lit == Lit::Null {
        return Ok(Operand::Val(TV::Null));
    }
    match f.ftype {
        FieldType::Id | FieldType::Reference => match lit {
            Lit::Str(s) => ids::normalize(s)
                .map(|id| Operand::Val(TV::Str(id)))
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "INVALID_QUERY_FILTER_OPERATOR",
                        caret_message(env.src, pos, &format!("invalid ID field: {s}")),
                    )
                }),
            _ => Err(wrong()),
        },
        t if t.is_textual() => match lit {
            Lit::Str(s) => Ok(Operand::Val(TV::Str(s.clone()))),
            _ => Err(wrong()),
        },
        FieldType::Boolean => match lit {
            Lit::Bool(b) => Ok(Operand::Val(TV::Bool(*b))),
            _ => Err(wrong()),
        },
        FieldType::Int | FieldType::Double | FieldType::Currency => match lit {
            Lit::Num(n) => Ok(Operand::Val(TV::Num(*n))),
            _ => Err(wrong()),
        },
        FieldType::Date => match lit {
            Lit::Date(d) => Ok(Operand::Val(TV::Date(*d))),
            Lit::Range(r) => {
                let (s, e) = date_range(*r, env.now);
                Ok(Operand::Range(s, e))
            }
            _ => Err(wrong()),
        },
        FieldType::DateTime => match lit {
            Lit::DateTime(d) => Ok(Operand::Val(TV::Dt(*d))),
            Lit::Range(r) => {
                let (s, e) = date_range(*r, env.now);
                Ok(Operand::Range(s, e))
            }
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
}

// ---- compiled WHERE ----------------------------------------------------------------------

enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(Resolved, Op, Operand),
    In(Resolved, bool, Vec<Operand>),
    InSet(Resolved, bool, HashSet<String>),
    Like(Resolved, Vec<char>),
    Includes(Resolved, bool, Vec<Vec<String>>),
}

fn compile_filter(
    env: &Env<'_>,
    base: &ObjectDef,
    alias: Option<&str>,
    e: &Expr,
) -> Result<Filter, ApiError> {
    Ok(match e {
        Expr::And(a, b) => Filter::And(
            Box::new(compile_filter(env, base, alias, a)?),
            Box::new(compile_filter(env, base, alias, b)?),
        ),
        Expr::Or(a, b) => Filter::Or(
            Box::new(compile_filter(env, base, alias, a)?),
            Box::new(compile_filter(env, base, alias, b)?),
        ),
        Expr::Not(a) => Filter::Not(Box::new(compile_filter(env, base, alias, a)?)),
        Expr::Cond(c) => {
            let r = resolve_path(env, base, alias, &c.field)?;
            match (&c.op, &c.rhs) {
                (Op::Like, Rhs::Value(Lit::Str(p), _)) => {
                    if !r.field.ftype.is_textual() {
                        return Err(caret(
                            env,
                            "INVALID_FIELD",
                            c.field.pos,
                            &format!(
                                "invalid operator on {} field: {}",
                                r.field.ftype.wire_name(),
                                r.field.name
                            ),
                        ));
                    }
                    Filter::Like(r, p.chars().collect())
                }
                (Op::Like, Rhs::Value(lit, pos)) => {
                    let err = check_literal(env, &r.field, lit, *pos).err();
                    return Err(err.unwrap_or_else(|| {
                        caret(env, "MALFORMED_QUERY", *pos, "LIKE needs a string")
                    }));
                }
                (Op::Includes | Op::Excludes, Rhs::List(vals)) => {
                    if r.field.ftype != FieldType::MultiPicklist {
                        return Err(caret(
                            env,
                            "INVALID_FIELD",
                            c.field.pos,
                            &format!(
                                "invalid operator on {} field: {}",
                                r.field.ftype.wire_name(),
                                r.field.name
                            ),
                        ));
                    }
                    let mut groups = Vec::new();
                    for (lit, pos) in vals {
                        let Lit::Str(s) = lit else {
                            return Err(caret(
                                env,
                                "MALFORMED_QUERY",
                                *pos,
                                "INCLUDES needs strings",
                            ));
                        };
                        groups.push(s.split(';').map(|p| p.trim().to_lowercase()).collect());
                    }
                    Filter::Includes(r, c.op == Op::Excludes, groups)
                }
                (Op::In | Op::NotIn, Rhs::List(vals)) => {
                    let mut ops = Vec::new();
                    for (lit, pos) in vals {
                        ops.push(check_literal(env, &r.field, lit, *pos)?);
                    }
                    Filter::In(r, c.op == Op::NotIn, ops)
                }
                (Op::In | Op::NotIn, Rhs::SubQuery(q)) => {
                    let set = semi_join(env, q)?;
                    Filter::InSet(r, c.op == Op::NotIn, set)
                }
                (op, Rhs::Value(lit, pos)) => {
                    let operand = check_literal(env, &r.field, lit, *pos)?;
                    Filter::Cmp(r, *op, operand)
                }
                (_, _) => {
                    return Err(caret(
                        env,
                        "MALFORMED_QUERY",
                        c.field.pos,
                        "unexpected token: (",
                    ));
                }
            }
        }
    })
}

/// The id set of a semi-join subquery (`Id IN (SELECT AccountId FROM Contact)`).
fn semi_join(env: &Env<'_>, q: &Query) -> Result<HashSet<String>, ApiError> {
    let obj = env
        .data
        .schema
        .visible_object(&q.from.name)
        .ok_or_else(|| unknown_object(env.src, q.from.pos, &q.from.name))?;
    let [SelectItem::Field(fp)] = q.select.as_slice() else {
        return Err(caret(
            env,
            "MALFORMED_QUERY",
            q.from.pos,
            "semi join sub-selects can only select one field",
        ));
    };
    let r = resolve_path(env, obj, q.from.alias.as_deref(), fp)?;
    let filter = q
        .filter
        .as_ref()
        .map(|f| compile_filter(env, obj, q.from.alias.as_deref(), f))
        .transpose()?;
    let store = &env.data.store;
    Ok(store
        .iter_object(&obj.name, false)
        .filter(|rec| filter.as_ref().is_none_or(|f| matches(store, rec, f)))
        .filter_map(|rec| fetch(store, rec, &r).as_str().map(str::to_string))
        .collect())
}

fn cmp_match(tv: &TV, op: Op, val: &Operand) -> bool {
    match val {
        Operand::Range(s, e) => {
            let v = match tv {
                TV::Date(d) => midnight(*d),
                TV::Dt(d) => *d,
                _ => return op == Op::Ne,
            };
            match op {
                Op::Eq => *s <= v && v < *e,
                Op::Ne => !(*s <= v && v < *e),
                Op::Lt => v < *s,
                Op::Le => v < *e,
                Op::Gt => v >= *e,
                Op::Ge => v >= *s,
                _ => false,
            }
        }
        Operand::Val(TV::Null) => match op {
            Op::Eq => *tv == TV::Null,
            Op::Ne => *tv != TV::Null,
            _ => false,
        },
        Operand::Val(v) => {
            if *tv == TV::Null {
                return op == Op::Ne;
            }
            let ord = compare_tv(tv, v);
            match op {
                Op::Eq => ord == Some(Ordering::Equal),
                Op::Ne => ord != Some(Ordering::Equal),
                Op::Lt => ord == Some(Ordering::Less),
                Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ord == Some(Ordering::Greater),
                Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                _ => false,
            }
        }
    }
}

/// Case-insensitive LIKE with `%`, `_` and backslash-escaped literals.
pub fn like(text: &str, pattern: &[char]) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Lit(char),
    }
    let mut pat = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '\\' if i + 1 < pattern.len() => {
                i += 1;
                pat.push(P::Lit(pattern[i]));
            }
            '%' => pat.push(P::Any),
            '_' => pat.push(P::One),
            c => pat.push(P::Lit(c)),
        }
        i += 1;
    }
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let lower = |c: char| c.to_lowercase().next().unwrap_or(c);
    // dp[j]: pattern[..i] matches text[..j]
    let mut dp = vec![false; text.len() + 1];
    dp[0] = true;
    for p in &pat {
        let mut next = vec![false; text.len() + 1];
        match p {
            P::Any => {
                let mut seen = false;
                for j in 0..=text.len() {
                    seen |= dp[j];
                    next[j] = seen;
                }
            }
            P::One => {
                next[1..].copy_from_slice(&dp[..text.len()]);
            }
            P::Lit(c) => {
                for j in 1..=text.len() {
                    next[j] = dp[j - 1] && text[j - 1] == lower(*c);
                }
            }
        }
        dp = next;
    }
    dp[text.len()]
}

fn matches(store: &Store, rec: &Record, f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => matches(store, rec, a) && matches(store, rec, b),
        Filter::Or(a, b) => matches(store, rec, a) || matches(store, rec, b),
        Filter::Not(a) => !matches(store, rec, a),
        Filter::Cmp(r, op, val) => {
            cmp_match(&typed(r.field.ftype, &fetch(store, rec, r)), *op, val)
        }
        Filter::In(r, negated, vals) => {
            let tv = typed(r.field.ftype, &fetch(store, rec, r));
            let hit = vals.iter().any(|v| cmp_match(&tv, Op::Eq, v));
            hit != *negated
        }
        Filter::InSet(r, negated, set) => {
            let v = fetch(store, rec, r);
            let hit = v.as_str().is_some_and(|s| set.contains(s));
            hit != *negated
        }
        Filter::Like(r, pattern) => fetch(store, rec, r)
            .as_str()
            .is_some_and(|s| like(s, pattern)),
        Filter::Includes(r, excludes, groups) => {
            let v = fetch(store, rec, r);
            let have: HashSet<String> = v
                .as_str()
                .unwrap_or("")
                .split(';')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            let hit = groups.iter().any(|g| g.iter().all(|x| have.contains(x)));
            hit != *excludes
        }
    }
}

// ---- ordering ----------------------------------------------------------------------------

struct SortKey {
    path: Resolved,
    desc: bool,
    nulls_last: bool,
}

fn compile_order(
    env: &Env<'_>,
    base: &ObjectDef,
    alias: Option<&str>,
    items: &[OrderItem],
) -> Result<Vec<SortKey>, ApiError> {
    items
        .iter()
        .map(|o| {
            Ok(SortKey {
                path: resolve_path(env, base, alias, &o.field)?,
                desc: o.desc,
                nulls_last: o.nulls_last.unwrap_or(o.desc),
            })
        })
        .collect()
}

fn sort_records(store: &Store, rows: &mut [&Record], keys: &[SortKey]) {
    if keys.is_empty() {
        return;
    }
    rows.sort_by(|a, b| {
        for k in keys {
            let va = typed(k.path.field.ftype, &fetch(store, a, &k.path));
            let vb = typed(k.path.field.ftype, &fetch(store, b, &k.path));
            let ord = match (&va, &vb) {
                (TV::Null, TV::Null) => Ordering::Equal,
                (TV::Null, _) => {
                    if k.nulls_last {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (_, TV::Null) => {
                    if k.nulls_last {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                _ => {
                    let o = compare_tv(&va, &vb).unwrap_or(Ordering::Equal);
                    if k.desc { o.reverse() } else { o }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

// ---- projection --------------------------------------------------------------------------

/// The SELECT list as a tree, so that `Account.Name, Account.Phone` become one nested
/// `Account` object.
enum Node {
    Field {
        key: String,
        path: Resolved,
    },
    Parent {
        key: String,
        ref_field: String,
        children: Vec<Node>,
    },
    Children {
        key: String,
        plan: Box<Plan>,
        field: String,
    },
}

fn insert_node(nodes: &mut Vec<Node>, path: &Resolved, depth: usize) -> bool {
    if depth == path.steps.len() {
        let key = path.field.name.clone();
        if nodes
            .iter()
            .any(|n| matches!(n, Node::Field { key: k, .. } if *k == key))
        {
            return false;
        }
        nodes.push(Node::Field {
            key,
            path: path.clone(),
        });
        return true;
    }
    let step = &path.steps[depth];
    let existing = nodes.iter_mut().find_map(|n| match n {
        Node::Parent { key, children, .. } if *key == step.rel_name => Some(children),
        _ => None,
    });
    match existing {
        Some(children) => insert_node(children, path, depth + 1),
        None => {
            let mut children = Vec::new();
            insert_node(&mut children, path, depth + 1);
            nodes.push(Node::Parent {
                key: step.rel_name.clone(),
                ref_field: step.ref_field.clone(),
                children,
            });
            true
        }
    }
}

/// A query ready to run.
struct Plan {
    object: ObjectDef,
    nodes: Vec<Node>,
    filter: Option<Filter>,
    order: Vec<SortKey>,
    limit: Option<u64>,
    offset: Option<u64>,
    count_all: bool,
    aggregates: Vec<(String, Resolved)>,
}

fn plan(env: &Env<'_>, q: &Query, base: &ObjectDef) -> Result<Plan, ApiError> {
    let alias = q.from.alias.as_deref();
    let mut nodes = Vec::new();
    let mut count_all = false;
    let mut aggregates = Vec::new();
    let mut plain_fields = Vec::new();
    for item in &q.select {
        match item {
            SelectItem::Field(fp) => {
                let r = resolve_path(env, base, alias, fp)?;
                plain_fields.push(fp.clone());
                if !insert_node(&mut nodes, &r, 0) {
                    return Err(caret(
                        env,
                        "INVALID_FIELD",
                        fp.pos,
                        &format!("duplicate field selected: {}", r.keys().join(".")),
                    ));
                }
            }
            SelectItem::CountAll { .. } => count_all = true,
            SelectItem::Count { arg, alias: a } => {
                let r = resolve_path(env, base, alias, arg)?;
                let key = a
                    .clone()
                    .unwrap_or_else(|| format!("expr{}", aggregates.len()));
                aggregates.push((key, r));
            }
            SelectItem::SubQuery(sq) => {
                let (rel, child) = child_relationship(env, base, alias, sq)?;
                let child_plan = plan(env, sq, &child.0)?;
                nodes.push(Node::Children {
                    key: rel,
                    plan: Box::new(child_plan),
                    field: child.1,
                });
            }
        }
    }
    if (count_all || !aggregates.is_empty()) && !plain_fields.is_empty() {
        let fp = &plain_fields[0];
        return Err(caret(
            env,
            "MALFORMED_QUERY",
            fp.pos,
            &format!("Field must be grouped or aggregated: {}", fp.path),
        ));
    }
    if q.offset.is_some_and(|off| off > 2000) {
        return Err(ApiError::new(
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Maximum SOQL offset allowed is 2000",
        ));
    }
    let filter = q
        .filter
        .as_ref()
        .map(|f| compile_filter(env, base, alias, f))
        .transpose()?;
    let order = compile_order(env, base, alias, &q.order_by)?;
    Ok(Plan {
        object: base.clone(),
        nodes,
        filter,
        order,
        limit: q.limit,
        offset: q.offset,
        count_all,
        aggregates,
    })
}

/// Resolves a subquery's FROM (`Contacts` or `Account.Contacts`) to (relationship name,
/// (child object, lookup field)).
fn child_relationship(
    env: &Env<'_>,
    base: &ObjectDef,
    alias: Option<&str>,
    sq: &Query,
) -> Result<(String, (ObjectDef, String)), ApiError> {
    let mut name = sq.from.name.as_str();
    if let Some((head, tail)) = name.split_once('.')
        && (head.eq_ignore_ascii_case(&base.name)
            || alias.is_some_and(|a| a.eq_ignore_ascii_case(head)))
    {
        name = tail;
    }
    let schema = &env.data.schema;
    let found = schema.children_of(&base.name).into_iter().find(|c| {
        c.relationship_name.eq_ignore_ascii_case(name)
            && schema.visible_object(&c.child_object).is_some()
    });
    match found.and_then(|c| {
        schema
            .visible_object(&c.child_object)
            .map(|o| (c.relationship_name.clone(), (o.clone(), c.field.clone())))
    }) {
        Some(x) => Ok(x),
        None => Err(caret(
            env,
            "INVALID_TYPE",
            sq.from.pos,
            &format!(
                "Didn't understand relationship '{name}' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
            ),
        )),
    }
}

fn attributes(env: &Env<'_>, rec: &Record) -> J {
    J::obj([
        ("type", J::str(&rec.sobject)),
        (
            "url",
            J::Str(format!(
                "/services/data/v{}/sobjects/{}/{}",
                env.version, rec.sobject, rec.id
            )),
        ),
    ])
}

fn project(env: &Env<'_>, rec: &Record, nodes: &[Node]) -> J {
    let store = &env.data.store;
    let mut pairs = vec![("attributes".to_string(), attributes(env, rec))];
    for n in nodes {
        match n {
            Node::Field { key, path } => {
                let v = field_of(store, rec, &path.field.name);
                pairs.push((key.clone(), J::from(&v)));
            }
            Node::Parent {
                key,
                ref_field,
                children,
            } => {
                let parent = rec
                    .get_str(ref_field)
                    .and_then(|id| store.get(id))
                    .filter(|p| !p.is_deleted());
                let v = match parent {
                    Some(p) => project(env, p, children),
                    None => J::Null,
                };
                pairs.push((key.clone(), v));
            }
            Node::Children { key, plan, field } => {
                let kids: Vec<&Record> = store
                    .iter_object(&plan.object.name, env.all_rows)
                    .filter(|c| c.get_str(field) == Some(rec.id.as_str()))
                    .collect();
                let out = execute(env, plan, kids);
                let v = if out.total_size == 0 {
                    J::Null
                } else {
                    J::obj([
                        ("totalSize", J::uint(out.total_size as u64)),
                        ("done", J::Bool(true)),
                        ("records", J::Arr(out.records)),
                    ])
                };
                pairs.push((key.clone(), v));
            }
        }
    }
    J::Obj(pairs)
}

fn execute(env: &Env<'_>, plan: &Plan, candidates: Vec<&Record>) -> Output {
    let store = &env.data.store;
    let mut rows: Vec<&Record> = candidates
        .into_iter()
        .filter(|r| plan.filter.as_ref().is_none_or(|f| matches(store, r, f)))
        .collect();
    if plan.count_all || !plan.aggregates.is_empty() {
        if plan.count_all {
            let n = rows
                .len()
                .min(plan.limit.map_or(usize::MAX, |l| l as usize));
            return Output {
                total_size: n,
                records: Vec::new(),
            };
        }
        let mut pairs = vec![(
            "attributes".to_string(),
            J::obj([("type", J::str("AggregateResult"))]),
        )];
        for (key, path) in &plan.aggregates {
            let n = rows
                .iter()
                .filter(|r| !fetch(store, r, path).is_null())
                .count();
            pairs.push((key.clone(), J::uint(n as u64)));
        }
        return Output {
            total_size: 1,
            records: vec![J::Obj(pairs)],
        };
    }
    sort_records(store, &mut rows, &plan.order);
    let offset = plan.offset.unwrap_or(0) as usize;
    let limit = plan.limit.map_or(usize::MAX, |l| l as usize);
    let records: Vec<J> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| project(env, r, &plan.nodes))
        .collect();
    Output {
        total_size: records.len(),
        records,
    }
}

/// Resolves and runs a top-level query.
pub fn run(env: &Env<'_>, q: &Query) -> Result<Output, ApiError> {
    let base = env
        .data
        .schema
        .visible_object(&q.from.name)
        .ok_or_else(|| unknown_object(env.src, q.from.pos, &q.from.name))?;
    if !base.queryable {
        return Err(unknown_object(env.src, q.from.pos, &q.from.name));
    }
    let p = plan(env, q, base)?;
    let candidates: Vec<&Record> = env
        .data
        .store
        .iter_object(&base.name, env.all_rows)
        .collect();
    Ok(execute(env, &p, candidates))
}

/// Runs a SOSL `RETURNING Obj(fields WHERE … ORDER BY … LIMIT n)` clause over candidate
/// records found by the search term (shared with [`crate::sosl`]).
#[allow(clippy::too_many_arguments)]
pub fn run_on(
    env: &Env<'_>,
    base: &ObjectDef,
    select: &[SelectItem],
    filter: Option<&Expr>,
    order_by: &[OrderItem],
    limit: Option<u64>,
    offset: Option<u64>,
    candidates: Vec<&Record>,
) -> Result<Vec<J>, ApiError> {
    let q = Query {
        select: select.to_vec(),
        from: FromClause {
            name: base.name.clone(),
            alias: None,
            pos: Pos::default(),
        },
        filter: filter.cloned(),
        order_by: order_by.to_vec(),
        limit,
        offset,
    };
    let p = plan(env, &q, base)?;
    Ok(execute(env, &p, candidates).records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matching() {
        let p = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(like("Acme Corp", &p("acme%")));
        assert!(like("Acme Corp", &p("%CORP")));
        assert!(like("Acme", &p("A_me")));
        assert!(!like("Acme", &p("A_e")));
        assert!(like("50%", &p("50\\%")));
        assert!(!like("500", &p("50\\%")));
        assert!(like("", &p("%")));
    }

    #[test]
    fn caret_format_matches_recording() {
        let src = "SELECT Bacon__c FROM Account LIMIT 2";
        let m = caret_message(
            src,
            Pos {
                row: 1,
                col: 8,
                offset: 7,
            },
            "X",
        );
        assert_eq!(
            m,
            "\nSELECT Bacon__c FROM Account LIMIT 2\n       ^\nERROR at Row:1:Column:8\nX"
        );
    }

    #[test]
    fn last_n_days_includes_today_and_n_days_back() {
        let now = Utc
            .with_ymd_and_hms(2024, 3, 10, 15, 0, 0)
            .single()
            .expect("date");
        let (s, e) = date_range(DateLiteral::LastNDays(2), now);
        assert_eq!(
            s,
            Utc.with_ymd_and_hms(2024, 3, 8, 0, 0, 0)
                .single()
                .expect("date")
        );
        assert_eq!(
            e,
            Utc.with_ymd_and_hms(2024, 3, 11, 0, 0, 0)
                .single()
                .expect("date")
        );
        let (s, e) = date_range(DateLiteral::ThisMonth, now);
        assert_eq!(
            s,
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0)
                .single()
                .expect("date")
        );
        assert_eq!(
            e,
            Utc.with_ymd_and_hms(2024, 4, 1, 0, 0, 0)
                .single()
                .expect("date")
        );
    }
}
