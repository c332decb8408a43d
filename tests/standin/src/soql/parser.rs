//! Recursive-descent SOQL parser. SOSL reuses the field-list, WHERE and ORDER BY rules.

use chrono::{DateTime, NaiveDate, Utc};

use super::ast::*;
use super::lexer::{Pos, Tok, Token};
use crate::values;

/// A syntax error: Salesforce reports these as MALFORMED_QUERY.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub pos: Pos,
}

/// Words that end a FROM clause, so they cannot be an alias.
const CLAUSE_WORDS: &[&str] = &[
    "WHERE", "ORDER", "LIMIT", "OFFSET", "GROUP", "WITH", "FOR", "USING", "HAVING", "UPDATE",
];

pub struct Parser {
    toks: Vec<Token>,
    i: usize,
}

impl Parser {
    pub fn new(mut toks: Vec<Token>) -> Parser {
        if toks.last().is_none_or(|t| t.tok != Tok::Eof) {
            let pos = toks.last().map(|t| t.pos).unwrap_or_default();
            toks.push(Token { tok: Tok::Eof, pos });
        }
        Parser { toks, i: 0 }
    }

    pub fn peek(&self) -> &Token {
        // `new` ends the stream with Eof, and `next` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.i + n)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    pub fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.next();
            true
        } else {
            false
        }
    }

    pub fn unexpected(&self) -> ParseError {
        let t = self.peek();
        ParseError {
            message: format!("unexpected token: {}", t.tok),
            pos: t.pos,
        }
    }

    fn unsupported(&self, what: &str) -> ParseError {
        ParseError {
            message: format!("sf-standin does not support {what} in SOQL"),
            pos: self.peek().pos,
        }
    }

    pub fn expect_kw(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    pub fn expect(&mut self, tok: Tok) -> Result<(), ParseError> {
        if self.peek().tok == tok {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    pub fn at_eof(&self) -> bool {
        self.peek().tok == Tok::Eof
    }

    /// `SELECT … FROM … [WHERE …] [ORDER BY …] [LIMIT n] [OFFSET n]`; `nested` for a
    /// subquery, which ends at `)` instead of the end of input.
    pub fn parse_query(&mut self, nested: bool) -> Result<Query, ParseError> {
        self.expect_kw("SELECT")?;
        let select = self.parse_select_list()?;
        self.expect_kw("FROM")?;
        let from = self.parse_from()?;
        if self.is_kw("USING") {
            return Err(self.unsupported("USING SCOPE"));
        }
        let filter = if self.eat_kw("WHERE") {
            Some(self.parse_expr()?)
        } else {
            None
        };
        if self.is_kw("WITH") {
            return Err(self.unsupported("WITH"));
        }
        if self.is_kw("GROUP") {
            return Err(self.unsupported("GROUP BY"));
        }
        let order_by = if self.is_kw("ORDER") {
            self.parse_order_by()?
        } else {
            Vec::new()
        };
        let limit = if self.eat_kw("LIMIT") {
            Some(self.parse_count()?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET") {
            Some(self.parse_count()?)
        } else {
            None
        };
        // FOR VIEW / FOR REFERENCE only update "recently viewed"; accepted and ignored.
        if self.eat_kw("FOR") && !(self.eat_kw("VIEW") || self.eat_kw("REFERENCE")) {
            return Err(self.unsupported("FOR UPDATE"));
        }
        let end_ok = if nested {
            self.peek().tok == Tok::RParen
        } else {
            self.at_eof()
        };
        if !end_ok {
            return Err(self.unexpected());
        }
        Ok(Query {
            select,
            from,
            filter,
            order_by,
            limit,
            offset,
        })
    }

    fn parse_count(&mut self) -> Result<u64, ParseError> {
        match &self.peek().tok {
            Tok::Num(n) => match n.parse::<u64>() {
                Ok(v) => {
                    self.next();
                    Ok(v)
                }
                Err(_) => Err(self.unexpected()),
            },
            _ => Err(self.unexpected()),
        }
    }

    fn parse_from(&mut self) -> Result<FromClause, ParseError> {
        let t = self.next();
        let Tok::Ident(name) = t.tok else {
            self.i -= usize::from(t.tok != Tok::Eof);
            return Err(ParseError {
                message: format!("unexpected token: {}", t.tok),
                pos: t.pos,
            });
        };
        let mut alias = None;
        if let Tok::Ident(a) = &self.peek().tok {
            let is_clause = CLAUSE_WORDS.iter().any(|w| a.eq_ignore_ascii_case(w));
            if !is_clause {
                if a.eq_ignore_ascii_case("AS") {
                    self.next();
                }
                if let Tok::Ident(a) = &self.peek().tok {
                    alias = Some(a.clone());
                    self.next();
                }
            }
        }
        Ok(FromClause {
            name,
            alias,
            pos: t.pos,
        })
    }

    /// The SELECT list (also a SOSL RETURNING field list).
    pub fn parse_select_list(&mut self) -> Result<Vec<SelectItem>, ParseError> {
        let mut items = vec![self.parse_select_item()?];
        while self.peek().tok == Tok::Comma {
            self.next();
            items.push(self.parse_select_item()?);
        }
        Ok(items)
    }

    fn parse_select_item(&mut self) -> Result<SelectItem, ParseError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::LParen => {
                self.next();
                let q = self.parse_query(true)?;
                self.expect(Tok::RParen)?;
                Ok(SelectItem::SubQuery(Box::new(q)))
            }
            Tok::Ident(name) => {
                let is_call = self.peek_at(1).is_some_and(|n| n.tok == Tok::LParen);
                if is_call && name.eq_ignore_ascii_case("COUNT") {
                    self.next();
                    self.next();
                    if self.peek().tok == Tok::RParen {
                        self.next();
                        return Ok(SelectItem::CountAll { pos: t.pos });
                    }
                    let arg = self.parse_field_path()?;
                    self.expect(Tok::RParen)?;
                    let alias = match &self.peek().tok {
                        Tok::Ident(a)
                            if !a.eq_ignore_ascii_case("FROM")
                                && !CLAUSE_WORDS.iter().any(|w| a.eq_ignore_ascii_case(w)) =>
                        {
                            let a = a.clone();
                            self.next();
                            Some(a)
                        }
                        _ => None,
                    };
                    return Ok(SelectItem::Count { arg, alias });
                }
                if is_call {
                    return Err(self.unsupported(&format!("{name}()")));
                }
                if name.eq_ignore_ascii_case("TYPEOF") {
                    return Err(self.unsupported("TYPEOF"));
                }
                if name.eq_ignore_ascii_case("FROM") {
                    return Err(self.unexpected());
                }
                Ok(SelectItem::Field(self.parse_field_path()?))
            }
            _ => Err(self.unexpected()),
        }
    }

    pub fn parse_field_path(&mut self) -> Result<FieldPath, ParseError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Ident(path) => {
                self.next();
                Ok(FieldPath { path, pos: t.pos })
            }
            _ => Err(self.unexpected()),
        }
    }

    /// `ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], …`
    pub fn parse_order_by(&mut self) -> Result<Vec<OrderItem>, ParseError> {
        self.expect_kw("ORDER")?;
        self.expect_kw("BY")?;
        let mut out = Vec::new();
        loop {
            let field = self.parse_field_path()?;
            let desc = if self.eat_kw("DESC") {
                true
            } else {
                self.eat_kw("ASC");
                false
            };
            let nulls_last = if self.eat_kw("NULLS") {
                if self.eat_kw("LAST") {
                    Some(true)
                } else {
                    self.expect_kw("FIRST")?;
                    Some(false)
                }
            } else {
                None
            };
            out.push(OrderItem {
                field,
                desc,
                nulls_last,
            });
            if self.peek().tok == Tok::Comma {
                self.next();
            } else {
                return Ok(out);
            }
        }
    }

    /// A WHERE condition expression: OR of ANDs of (NOT) conditions / parentheses.
    pub fn parse_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.parse_and()?;
        while self.eat_kw("OR") {
            let right = self.parse_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.parse_not()?;
        while self.eat_kw("AND") {
            let right = self.parse_not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.parse_not()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let e = self.parse_expr()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        self.parse_cond().map(Expr::Cond)
    }

    fn parse_cond(&mut self) -> Result<Cond, ParseError> {
        let field = self.parse_field_path()?;
        let t = self.peek().clone();
        let op = match &t.tok {
            Tok::Eq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Gt => Op::Gt,
            Tok::Le => Op::Le,
            Tok::Ge => Op::Ge,
            Tok::Ident(w) if w.eq_ignore_ascii_case("LIKE") => Op::Like,
            Tok::Ident(w) if w.eq_ignore_ascii_case("IN") => Op::In,
            Tok::Ident(w) if w.eq_ignore_ascii_case("INCLUDES") => Op::Includes,
            Tok::Ident(w) if w.eq_ignore_ascii_case("EXCLUDES") => Op::Excludes,
            Tok::Ident(w) if w.eq_ignore_ascii_case("NOT") => {
                self.next();
                if !self.is_kw("IN") {
                    return Err(self.unexpected());
                }
                Op::NotIn
            }
            _ => return Err(self.unexpected()),
        };
        self.next();
        let rhs = match op {
            Op::In | Op::NotIn | Op::Includes | Op::Excludes => {
                self.expect(Tok::LParen)?;
                if matches!(op, Op::In | Op::NotIn) && self.is_kw("SELECT") {
                    let q = self.parse_query(true)?;
                    self.expect(Tok::RParen)?;
                    Rhs::SubQuery(Box::new(q))
                } else {
                    let mut vals = vec![self.parse_literal()?];
                    while self.peek().tok == Tok::Comma {
                        self.next();
                        vals.push(self.parse_literal()?);
                    }
                    self.expect(Tok::RParen)?;
                    Rhs::List(vals)
                }
            }
            _ => {
                let (lit, pos) = self.parse_literal()?;
                Rhs::Value(lit, pos)
            }
        };
        Ok(Cond { field, op, rhs })
    }

    /// A value: string, number, date, dateTime, null, true/false or a date literal.
    pub fn parse_literal(&mut self) -> Result<(Lit, Pos), ParseError> {
        let t = self.peek().clone();
        let bad_date = |s: &str| ParseError {
            message: format!(
                "line {}:{} no viable alternative at character ' {s}'",
                t.pos.row,
                t.pos.col - 1
            ),
            pos: t.pos,
        };
        let lit = match &t.tok {
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Num(n) => Lit::Num(n.parse::<f64>().map_err(|_| self.unexpected())?),
            Tok::Date(s) => {
                Lit::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad_date(s))?)
            }
            Tok::DateTime(s) => Lit::DateTime(parse_soql_datetime(s).ok_or_else(|| bad_date(s))?),
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => Lit::Null,
            Tok::Ident(w) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Tok::Ident(w) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Tok::Ident(w) => {
                let w = w.to_ascii_uppercase();
                self.next();
                let lit = self.date_literal(&w, &t)?;
                return Ok((Lit::Range(lit), t.pos));
            }
            _ => return Err(self.unexpected()),
        };
        self.next();
        Ok((lit, t.pos))
    }

    fn date_literal(&mut self, w: &str, t: &Token) -> Result<DateLiteral, ParseError> {
        let simple = match w {
            "YESTERDAY" => Some(DateLiteral::Yesterday),
            "TODAY" => Some(DateLiteral::Today),
            "TOMORROW" => Some(DateLiteral::Tomorrow),
            "LAST_WEEK" => Some(DateLiteral::LastWeek),
            "THIS_WEEK" => Some(DateLiteral::ThisWeek),
            "NEXT_WEEK" => Some(DateLiteral::NextWeek),
            "LAST_MONTH" => Some(DateLiteral::LastMonth),
            "THIS_MONTH" => Some(DateLiteral::ThisMonth),
            "NEXT_MONTH" => Some(DateLiteral::NextMonth),
            "LAST_YEAR" => Some(DateLiteral::LastYear),
            "THIS_YEAR" => Some(DateLiteral::ThisYear),
            "NEXT_YEAR" => Some(DateLiteral::NextYear),
            "LAST_90_DAYS" => Some(DateLiteral::Last90Days),
            "NEXT_90_DAYS" => Some(DateLiteral::Next90Days),
            _ => None,
        };
        if let Some(d) = simple {
            return Ok(d);
        }
        let with_n: Option<fn(u32) -> DateLiteral> = match w {
            "LAST_N_DAYS" => Some(DateLiteral::LastNDays),
            "NEXT_N_DAYS" => Some(DateLiteral::NextNDays),
            "N_DAYS_AGO" => Some(DateLiteral::NDaysAgo),
            "LAST_N_WEEKS" => Some(DateLiteral::LastNWeeks),
            "NEXT_N_WEEKS" => Some(DateLiteral::NextNWeeks),
            "LAST_N_MONTHS" => Some(DateLiteral::LastNMonths),
            "NEXT_N_MONTHS" => Some(DateLiteral::NextNMonths),
            _ => None,
        };
        let Some(ctor) = with_n else {
            return Err(ParseError {
                message: format!("unexpected token: {}", t.tok),
                pos: t.pos,
            });
        };
        if self.peek().tok != Tok::Colon {
            return Err(ParseError {
                message: format!("expecting a colon, found '{}'", self.peek().tok),
                pos: self.peek().pos,
            });
        }
        self.next();
        let n = match &self.peek().tok {
            Tok::Num(n) => n.parse::<u32>().ok(),
            _ => None,
        };
        match n {
            Some(n) => {
                self.next();
                Ok(ctor(n))
            }
            None => Err(self.unexpected()),
        }
    }
}

/// SOQL dateTime literals: `YYYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm|±hhmm)`; a zone is required.
pub fn parse_soql_datetime(s: &str) -> Option<DateTime<Utc>> {
    let has_zone = s.ends_with('Z') || {
        let tail = s.rsplit_once('T').map(|(_, t)| t).unwrap_or("");
        tail.contains('+') || tail.contains('-')
    };
    if !has_zone {
        return None;
    }
    values::parse_datetime(s)
}

/// Parses a complete SOQL statement.
pub fn parse_tokens(toks: Vec<Token>) -> Result<Query, ParseError> {
    Parser::new(toks).parse_query(false)
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse(s: &str) -> Result<Query, ParseError> {
        parse_tokens(tokenize(s).expect("lexes"))
    }

    #[test]
    fn full_statement() {
        let q = parse(
            "SELECT Id, FirstName, Account.Name, (SELECT Subject FROM Tasks) FROM Contact c \
             WHERE (Phone != null OR MobilePhone != null) AND NOT LastName LIKE 'X%' \
             AND LastModifiedDate = LAST_N_DAYS:365 AND Id IN ('003000000000001AAA') \
             ORDER BY LastModifiedDate DESC NULLS LAST, Name LIMIT 2000 OFFSET 10",
        )
        .expect("parses");
        assert_eq!(q.select.len(), 4);
        assert_eq!(q.from.name, "Contact");
        assert_eq!(q.from.alias.as_deref(), Some("c"));
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].desc);
        assert_eq!(q.order_by[0].nulls_last, Some(true));
        assert_eq!(q.limit, Some(2000));
        assert_eq!(q.offset, Some(10));
        let Some(Expr::And(_, last)) = &q.filter else {
            panic!("expected AND at top: {:?}", q.filter);
        };
        assert!(matches!(**last, Expr::Cond(Cond { op: Op::In, .. })));
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let q = parse("SELECT Id FROM Lead WHERE a = 1 OR b = 2 AND c = 3").expect("parses");
        assert!(matches!(q.filter, Some(Expr::Or(_, ref r)) if matches!(**r, Expr::And(_, _))));
    }

    #[test]
    fn count_forms_and_semi_join() {
        let q = parse("SELECT COUNT() FROM Account").expect("parses");
        assert!(matches!(q.select[0], SelectItem::CountAll { .. }));
        let q = parse("SELECT COUNT(Id) total FROM Account").expect("parses");
        assert!(matches!(&q.select[0], SelectItem::Count { alias: Some(a), .. } if a == "total"));
        let q = parse("SELECT Id FROM Contact WHERE Id NOT IN (SELECT WhoId FROM Task)")
            .expect("parses");
        assert!(matches!(
            q.filter,
            Some(Expr::Cond(Cond {
                op: Op::NotIn,
                rhs: Rhs::SubQuery(_),
                ..
            }))
        ));
    }

    #[test]
    fn literals() {
        let q = parse(
            "SELECT Id FROM Task WHERE ActivityDate = 2024-01-02 AND CreatedDate > 2024-01-02T00:00:00+09:00 \
             AND IsClosed = false AND CallDurationInSeconds >= 30 AND CreatedDate < TODAY",
        )
        .expect("parses");
        assert!(q.filter.is_some());
        assert!(parse("SELECT Id FROM Task WHERE CreatedDate > 2024-01-02T00:00:00").is_err());
    }

    #[test]
    fn negative_cases() {
        let e = parse("SELEKT Name FROM Account").expect_err("fails");
        assert_eq!(e.message, "unexpected token: SELEKT");
        assert_eq!((e.pos.row, e.pos.col), (1, 1));
        assert_eq!(
            parse("SELECT Name FROM").expect_err("fails").message,
            "unexpected token: <EOF>"
        );
        assert!(parse("SELECT FROM Account").is_err());
        assert!(parse("SELECT Name, FROM Account").is_err());
        assert!(parse("SELECT Name FROM Account WHERE").is_err());
        assert!(parse("SELECT Name FROM Account WHERE Name =").is_err());
        assert!(parse("SELECT Name FROM Account LIMIT x").is_err());
        assert!(parse("SELECT Name FROM Account ORDER Name").is_err());
        assert!(parse("SELECT Name FROM Account WHERE (Name = 'a'").is_err());
        assert!(parse("SELECT Name FROM Account extra tokens").is_err());
        assert!(parse("SELECT Name FROM Account WHERE CreatedDate = LAST_N_DAYS").is_err());
        assert!(
            parse("SELECT Name FROM Account GROUP BY Name")
                .expect_err("unsupported")
                .message
                .contains("GROUP BY")
        );
    }
}
