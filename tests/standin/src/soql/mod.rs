//! SOQL: a tokenizer, a recursive-descent parser and an evaluator over the in-memory store.
//!
//! Supported (docs/salesforce-api.md §2a): field lists with parent paths (`Account.Name`,
//! `Owner.Name`, several levels), parent-to-child subqueries (`(SELECT … FROM Contacts)`),
//! `COUNT()` and `COUNT(field)`, WHERE with `= != <> < > <= >= IN NOT IN LIKE INCLUDES
//! EXCLUDES AND OR NOT ( )`, semi-joins (`Id IN (SELECT …)`), null/true/false, strings with
//! backslash escapes, numbers, date and dateTime literals and relative date literals
//! (TODAY, YESTERDAY, LAST_N_DAYS:n, …), ORDER BY with ASC/DESC and NULLS FIRST/LAST on
//! several keys, LIMIT and OFFSET. Not supported (answered with a MALFORMED_QUERY naming the
//! feature): GROUP BY/HAVING, aggregate functions other than COUNT, TYPEOF, FIELDS(), WITH,
//! USING SCOPE, FOR UPDATE.

pub mod ast;
pub mod eval;
pub mod lexer;
pub mod parser;

use crate::errors::ApiError;

/// Parses a query; syntax errors become MALFORMED_QUERY. An error on the very first token is
/// reported bare (`unexpected token: SELEKT`, HEROKU `query-malformed-soql.json`); later ones
/// with the caret layout the real service uses for positioned errors.
pub fn parse(src: &str) -> Result<ast::Query, ApiError> {
    if src.trim().is_empty() {
        return Err(ApiError::malformed_query(
            "A query string has to be specified",
        ));
    }
    let positioned = |message: &str, pos: lexer::Pos| {
        if pos.row == 1 && pos.col == 1 {
            ApiError::malformed_query(message)
        } else {
            ApiError::malformed_query(eval::caret_message(src, pos, message))
        }
    };
    let toks = lexer::tokenize(src).map_err(|e| positioned(&e.message, e.pos))?;
    // Leading whitespace does not move the "first token" rule.
    let first = toks.first().map(|t| t.pos);
    parser::parse_tokens(toks).map_err(|e| {
        if Some(e.pos) == first {
            ApiError::malformed_query(e.message)
        } else {
            positioned(&e.message, e.pos)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_malformed_message() {
        let e = parse("SELEKT Name FROM Account").expect_err("fails");
        assert_eq!(
            e.body().to_json(),
            r#"[{"message":"unexpected token: SELEKT","errorCode":"MALFORMED_QUERY"}]"#
        );
    }

    #[test]
    fn later_errors_point_at_the_token() {
        let e = parse("SELECT Name FRM Account").expect_err("fails");
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(
            e.message.contains("ERROR at Row:1:Column:13"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with("unexpected token: FRM"),
            "{}",
            e.message
        );
        assert_eq!(
            parse("  ").expect_err("empty").message,
            "A query string has to be specified"
        );
    }
}
