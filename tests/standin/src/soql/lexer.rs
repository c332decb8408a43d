//! SOQL tokenizer. Tokens carry their row and column because Salesforce's error messages
//! point at them (`ERROR at Row:1:Column:8`, HEROKU `query-unknown-column.json`).

use std::fmt;

/// Where a token starts: 1-based row and column, and the byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub row: usize,
    pub col: usize,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name, possibly dotted (`Account.Owner.Name`), or a keyword.
    Ident(String),
    /// A quoted string with escapes already resolved.
    Str(String),
    /// A number, kept as written.
    Num(String),
    /// `2024-01-31`.
    Date(String),
    /// `2024-01-31T10:00:00Z` / `…+09:00`.
    DateTime(String),
    LParen,
    RParen,
    Comma,
    Colon,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) | Tok::Num(s) | Tok::Date(s) | Tok::DateTime(s) => write!(f, "{s}"),
            Tok::Str(s) => write!(f, "'{s}'"),
            Tok::LParen => write!(f, "("),
            Tok::RParen => write!(f, ")"),
            Tok::Comma => write!(f, ","),
            Tok::Colon => write!(f, ":"),
            Tok::Eq => write!(f, "="),
            Tok::Ne => write!(f, "!="),
            Tok::Lt => write!(f, "<"),
            Tok::Gt => write!(f, ">"),
            Tok::Le => write!(f, "<="),
            Tok::Ge => write!(f, ">="),
            Tok::Eof => write!(f, "<EOF>"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// A lexical error, with the position of the offending character.
#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    pub message: String,
    pub pos: Pos,
}

struct Cursor<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
    row: usize,
    col: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).map(|(_, c)| *c)
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).map(|(_, c)| *c)
    }

    fn pos(&self) -> Pos {
        Pos {
            row: self.row,
            col: self.col,
            offset: self.chars.get(self.i).map_or(self.src.len(), |(o, _)| *o),
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.row += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Tokenizes `src` starting at byte offset `start` (SOSL reuses this after its `{…}` term).
pub fn tokenize_from(src: &str, start: usize) -> Result<Vec<Token>, LexError> {
    // Row/column of `start`.
    let (mut row, mut col) = (1, 1);
    for c in src[..start.min(src.len())].chars() {
        if c == '\n' {
            row += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    let mut cur = Cursor {
        src,
        chars: src.char_indices().filter(|(o, _)| *o >= start).collect(),
        i: 0,
        row,
        col,
    };
    let mut out = Vec::new();
    loop {
        while cur.peek().is_some_and(char::is_whitespace) {
            cur.bump();
        }
        let pos = cur.pos();
        let Some(c) = cur.peek() else {
            out.push(Token { tok: Tok::Eof, pos });
            return Ok(out);
        };
        let tok = match c {
            '(' => {
                cur.bump();
                Tok::LParen
            }
            ')' => {
                cur.bump();
                Tok::RParen
            }
            ',' => {
                cur.bump();
                Tok::Comma
            }
            ':' => {
                cur.bump();
                Tok::Colon
            }
            '=' => {
                cur.bump();
                Tok::Eq
            }
            '!' if cur.peek_at(1) == Some('=') => {
                cur.bump();
                cur.bump();
                Tok::Ne
            }
            '<' => {
                cur.bump();
                match cur.peek() {
                    Some('=') => {
                        cur.bump();
                        Tok::Le
                    }
                    Some('>') => {
                        cur.bump();
                        Tok::Ne
                    }
                    _ => Tok::Lt,
                }
            }
            '>' => {
                cur.bump();
                if cur.peek() == Some('=') {
                    cur.bump();
                    Tok::Ge
                } else {
                    Tok::Gt
                }
            }
            '\'' => lex_string(&mut cur, pos)?,
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && cur.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                lex_number_or_date(&mut cur)
            }
            c if is_ident_start(c) => {
                let mut s = String::new();
                while let Some(c) = cur.peek() {
                    if is_ident_char(c) || (c == '.' && cur.peek_at(1).is_some_and(is_ident_start))
                    {
                        s.push(c);
                        cur.bump();
                    } else {
                        break;
                    }
                }
                Tok::Ident(s)
            }
            other => {
                return Err(LexError {
                    message: format!(
                        "line {}:{} no viable alternative at character '{other}'",
                        pos.row,
                        pos.col - 1
                    ),
                    pos,
                });
            }
        };
        out.push(Token { tok, pos });
    }
}

/// Tokenizes a whole SOQL statement.
pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    tokenize_from(src, 0)
}

/// `'…'` with backslash escapes (docs/salesforce-api.md §2a: `'` and `\` must be escaped).
fn lex_string(cur: &mut Cursor<'_>, start: Pos) -> Result<Tok, LexError> {
    cur.bump();
    let mut s = String::new();
    loop {
        match cur.bump() {
            None => {
                return Err(LexError {
                    message: format!(
                        "line {}:{} mismatched character '<EOF>' expecting '''",
                        start.row,
                        start.col - 1
                    ),
                    pos: start,
                });
            }
            Some('\'') => return Ok(Tok::Str(s)),
            Some('\\') => {
                let esc_pos = cur.pos();
                match cur.bump() {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some('b') => s.push('\u{8}'),
                    Some('f') => s.push('\u{c}'),
                    Some('"') => s.push('"'),
                    Some('\'') => s.push('\''),
                    Some('\\') => s.push('\\'),
                    // LIKE wildcards keep their backslash; the LIKE matcher reads it.
                    Some('%') => s.push_str("\\%"),
                    Some('_') => s.push_str("\\_"),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| cur.bump()).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) if hex.len() == 4 => s.push(c),
                            _ => {
                                return Err(LexError {
                                    message: "Invalid string literal: bad unicode escape"
                                        .to_string(),
                                    pos: esc_pos,
                                });
                            }
                        }
                    }
                    other => {
                        return Err(LexError {
                            message: format!(
                                "Invalid string literal '{s}\\{}'. Illegal character sequence '\\{}' in string literal.",
                                other.map(String::from).unwrap_or_default(),
                                other.map(String::from).unwrap_or_default()
                            ),
                            pos: esc_pos,
                        });
                    }
                }
            }
            Some(c) => s.push(c),
        }
    }
}

fn take_digits(cur: &mut Cursor<'_>, s: &mut String) -> usize {
    let mut n = 0;
    while let Some(c) = cur.peek() {
        if c.is_ascii_digit() {
            s.push(c);
            cur.bump();
            n += 1;
        } else {
            break;
        }
    }
    n
}

/// Numbers, and date / dateTime literals (which also start with digits).
fn lex_number_or_date(cur: &mut Cursor<'_>) -> Tok {
    let mut s = String::new();
    if let Some(c @ ('-' | '+')) = cur.peek() {
        s.push(c);
        cur.bump();
    }
    let int_digits = take_digits(cur, &mut s);
    // yyyy-mm-dd
    if int_digits == 4
        && cur.peek() == Some('-')
        && cur.peek_at(1).is_some_and(|c| c.is_ascii_digit())
        && !s.starts_with(['-', '+'])
    {
        for _ in 0..2 {
            if cur.peek() == Some('-') {
                s.push('-');
                cur.bump();
                take_digits(cur, &mut s);
            }
        }
        if cur.peek() == Some('T') && cur.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            s.push('T');
            cur.bump();
            while let Some(c) = cur.peek() {
                if c.is_ascii_digit() || c == ':' || c == '.' {
                    s.push(c);
                    cur.bump();
                } else {
                    break;
                }
            }
            match cur.peek() {
                Some('Z') | Some('z') => {
                    s.push('Z');
                    cur.bump();
                }
                Some(c @ ('+' | '-')) => {
                    s.push(c);
                    cur.bump();
                    while let Some(c) = cur.peek() {
                        if c.is_ascii_digit() || c == ':' {
                            s.push(c);
                            cur.bump();
                        } else {
                            break;
                        }
                    }
                }
                _ => {}
            }
            return Tok::DateTime(s);
        }
        return Tok::Date(s);
    }
    if cur.peek() == Some('.') && cur.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
        s.push('.');
        cur.bump();
        take_digits(cur, &mut s);
    }
    Tok::Num(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s)
            .expect("lexes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn basic_statement() {
        assert_eq!(
            toks("SELECT Id, Account.Name FROM Contact WHERE Name != 'O\\'Brien' LIMIT 10"),
            vec![
                Tok::Ident("SELECT".into()),
                Tok::Ident("Id".into()),
                Tok::Comma,
                Tok::Ident("Account.Name".into()),
                Tok::Ident("FROM".into()),
                Tok::Ident("Contact".into()),
                Tok::Ident("WHERE".into()),
                Tok::Ident("Name".into()),
                Tok::Ne,
                Tok::Str("O'Brien".into()),
                Tok::Ident("LIMIT".into()),
                Tok::Num("10".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn dates_and_numbers() {
        assert_eq!(
            toks(
                "a >= 2024-01-31T10:00:00Z b < 2024-01-31T10:00:00+09:00 c = 2024-02-01 d > -1.5 e <> 3"
            ),
            vec![
                Tok::Ident("a".into()),
                Tok::Ge,
                Tok::DateTime("2024-01-31T10:00:00Z".into()),
                Tok::Ident("b".into()),
                Tok::Lt,
                Tok::DateTime("2024-01-31T10:00:00+09:00".into()),
                Tok::Ident("c".into()),
                Tok::Eq,
                Tok::Date("2024-02-01".into()),
                Tok::Ident("d".into()),
                Tok::Gt,
                Tok::Num("-1.5".into()),
                Tok::Ident("e".into()),
                Tok::Ne,
                Tok::Num("3".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn positions_are_one_based() {
        let t = tokenize("SELECT Bacon__c FROM Account").expect("lexes");
        assert_eq!(t[1].pos.row, 1);
        assert_eq!(t[1].pos.col, 8);
        let t = tokenize("SELECT Id\nFROM X").expect("lexes");
        assert_eq!((t[2].pos.row, t[2].pos.col), (2, 1));
    }

    #[test]
    fn like_escapes_survive_and_bad_input_fails() {
        assert_eq!(toks("'50\\%'")[0], Tok::Str("50\\%".into()));
        assert!(tokenize("'unterminated").is_err());
        assert!(tokenize("a = 'bad \\q'").is_err());
        assert!(tokenize("a ; b").is_err());
    }
}
