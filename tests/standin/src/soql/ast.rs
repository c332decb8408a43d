//! Syntax tree of the SOQL subset the stand-in understands (docs/salesforce-api.md §2a).

use chrono::{DateTime, NaiveDate, Utc};

use super::lexer::Pos;

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub from: FromClause,
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FromClause {
    /// Object name, or for a child subquery the relationship (`Contacts`, `Account.Contacts`).
    pub name: String,
    pub alias: Option<String>,
    pub pos: Pos,
}

/// A field reference as written (`Account.Owner.Name`), with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldPath {
    pub path: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelectItem {
    Field(FieldPath),
    /// `COUNT()`: only the number of rows is returned (`totalSize`, no records).
    CountAll {
        pos: Pos,
    },
    /// `COUNT(field) [alias]`: one AggregateResult row.
    Count {
        arg: FieldPath,
        alias: Option<String>,
    },
    /// A parent-to-child subquery `(SELECT … FROM Contacts)`.
    SubQuery(Box<Query>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
    In,
    NotIn,
    Includes,
    Excludes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub field: FieldPath,
    pub op: Op,
    pub rhs: Rhs,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    Value(Lit, Pos),
    List(Vec<(Lit, Pos)>),
    /// Semi-join: `Id IN (SELECT WhoId FROM Task)`.
    SubQuery(Box<Query>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Range(DateLiteral),
}

/// Relative date literals (SFDOC `sforce_api_calls_soql_select_dateformats.htm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateLiteral {
    Yesterday,
    Today,
    Tomorrow,
    LastWeek,
    ThisWeek,
    NextWeek,
    LastMonth,
    ThisMonth,
    NextMonth,
    LastYear,
    ThisYear,
    NextYear,
    Last90Days,
    Next90Days,
    LastNDays(u32),
    NextNDays(u32),
    NDaysAgo(u32),
    LastNWeeks(u32),
    NextNWeeks(u32),
    LastNMonths(u32),
    NextNMonths(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderItem {
    pub field: FieldPath,
    pub desc: bool,
    /// `None`: Salesforce's default (nulls first ascending, last descending).
    pub nulls_last: Option<bool>,
}
