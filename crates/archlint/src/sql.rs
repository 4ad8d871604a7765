//! A small SQL reader for string literals: decides whether a literal looks like SQL at all (so
//! English messages such as "user not found" are never scanned) and lists the names it uses in
//! table and schema positions (after FROM, JOIN, INTO, UPDATE, TABLE, REFERENCES, INDEX .. ON,
//! TRUNCATE, COPY, SCHEMA, `search_path`). Not a parser: just enough to find those names.

/// Whether a name is a table or a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Table,
    Schema,
}

/// A table or schema named by a SQL string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlName {
    pub kind: NameKind,
    /// The schema qualifying a table (`auth` in `auth.users`), or the schema itself.
    pub schema: Option<String>,
    /// The table name (for tables) or the schema name (for schemas).
    pub name: String,
    /// The reference as written in the string (`auth.users`, `"auth"."users"`).
    pub written: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A bare word, with its text as written.
    Word(String),
    /// A double-quoted identifier, unquoted.
    Quoted(String),
    /// A single-quoted string, unquoted.
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    start: usize,
    end: usize,
}

fn tokenize(sql: &str) -> Vec<Spanned> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            b'\'' | b'"' => {
                // Quotes are escaped by doubling them.
                let mut text = String::new();
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == c {
                        if bytes.get(i + 1) == Some(&c) {
                            text.push(c as char);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    let ch = sql[i..].chars().next().unwrap_or_default();
                    text.push(ch);
                    i += ch.len_utf8();
                }
                let token = if c == b'"' {
                    Token::Quoted(text)
                } else {
                    Token::Str(text)
                };
                tokens.push(Spanned {
                    token,
                    start,
                    end: i,
                });
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
                {
                    i += 1;
                }
                tokens.push(Spanned {
                    token: Token::Word(sql[start..i].to_owned()),
                    start,
                    end: i,
                });
            }
            _ if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or_default();
                i += ch.len_utf8();
                tokens.push(Spanned {
                    token: Token::Punct(ch),
                    start,
                    end: i,
                });
            }
        }
    }
    tokens
}

/// Words that never name a table.
const RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "EXISTS",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCKED",
    "NATURAL",
    "NOT",
    "NOTHING",
    "NOWAIT",
    "NULL",
    "OF",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "RETURNING",
    "RIGHT",
    "SELECT",
    "SET",
    "SHARE",
    "SKIP",
    "TABLE",
    "THEN",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Functions whose arguments use FROM without naming a table (`EXTRACT(YEAR FROM at)`).
const FROM_FUNCTIONS: &[&str] = &["EXTRACT", "SUBSTRING", "TRIM", "OVERLAY", "POSITION"];

/// What may follow CREATE / ALTER / DROP in a statement.
const DDL_OBJECTS: &[&str] = &[
    "TABLE",
    "SCHEMA",
    "INDEX",
    "UNIQUE",
    "VIEW",
    "TYPE",
    "SEQUENCE",
    "ROLE",
    "EXTENSION",
    "OR",
    "TEMP",
    "TEMPORARY",
    "MATERIALIZED",
    "FUNCTION",
    "TRIGGER",
    "UNLOGGED",
    "POLICY",
    "USER",
];

struct Reader<'a> {
    sql: &'a str,
    tokens: Vec<Spanned>,
}

impl Reader<'_> {
    fn word(&self, i: usize) -> Option<String> {
        match self.tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn is_word(&self, i: usize, words: &[&str]) -> bool {
        self.word(i).is_some_and(|w| words.contains(&w.as_str()))
    }

    fn is_punct(&self, i: usize, c: char) -> bool {
        matches!(self.tokens.get(i).map(|t| &t.token), Some(Token::Punct(p)) if *p == c)
    }

    /// An identifier (bare non-reserved word or quoted) at `i`.
    fn ident(&self, i: usize) -> Option<String> {
        match self.tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) if !RESERVED.contains(&w.to_ascii_uppercase().as_str()) => {
                Some(w.clone())
            }
            Some(Token::Quoted(q)) => Some(q.clone()),
            _ => None,
        }
    }

    fn position(&self, words: &[&str], from: usize) -> Option<usize> {
        (from..self.tokens.len()).find(|&i| self.is_word(i, words))
    }

    /// Whether the text reads as SQL: a statement keyword together with its usual partner.
    fn looks_like_sql(&self) -> bool {
        let n = self.tokens.len();
        (0..n).any(|i| match self.word(i).as_deref() {
            Some("SELECT") => self.position(&["FROM"], i + 1).is_some(),
            Some("INSERT") => self.is_word(i + 1, &["INTO"]),
            Some("DELETE") => self.is_word(i + 1, &["FROM"]),
            Some("UPDATE") => {
                let name = self.skip_modifiers(i + 1);
                let after = if self.is_punct(name + 1, '.') {
                    name + 3
                } else {
                    name + 1
                };
                self.ident(name).is_some() && self.is_word(after, &["SET"])
            }
            Some("CREATE" | "ALTER" | "DROP") => self.is_word(i + 1, DDL_OBJECTS),
            Some("TRUNCATE") => self.ident(i + 1).is_some() || self.is_word(i + 1, &["TABLE"]),
            Some("GRANT" | "REVOKE") => self.position(&["ON", "TO", "FROM"], i + 1).is_some(),
            Some("JOIN") => self.position(&["ON", "USING"], i + 1).is_some(),
            Some("SET") => self.is_word(i + 1, &["SEARCH_PATH", "LOCAL", "SESSION"]),
            _ => false,
        })
    }

    /// A possibly schema-qualified name at `i`; returns it and the index after it.
    fn qualified(&self, i: usize, kind: NameKind) -> Option<(SqlName, usize)> {
        let first = self.ident(i)?;
        let start = self.tokens[i].start;
        if self.is_punct(i + 1, '.')
            && let Some(second) = self.ident(i + 2)
        {
            let end = self.tokens[i + 2].end;
            let name = SqlName {
                kind,
                schema: Some(first),
                name: second,
                written: self.sql[start..end].to_owned(),
            };
            return Some((name, i + 3));
        }
        let name = SqlName {
            kind,
            schema: (kind == NameKind::Schema).then(|| first.clone()),
            name: first,
            written: self.sql[start..self.tokens[i].end].to_owned(),
        };
        Some((name, i + 1))
    }

    /// Skips `IF [NOT] EXISTS` and `ONLY`.
    fn skip_modifiers(&self, mut i: usize) -> usize {
        loop {
            if self.is_word(i, &["IF"]) {
                i += 1;
                if self.is_word(i, &["NOT"]) {
                    i += 1;
                }
                if self.is_word(i, &["EXISTS"]) {
                    i += 1;
                }
            } else if self.is_word(i, &["ONLY", "LATERAL"]) {
                i += 1;
            } else {
                return i;
            }
        }
    }

    /// `name [AS alias] [, name [AS alias]]*` starting at `i`.
    fn name_list(&self, mut i: usize, kind: NameKind, out: &mut Vec<SqlName>) {
        loop {
            i = self.skip_modifiers(i);
            let Some((name, next)) = self.qualified(i, kind) else {
                return;
            };
            out.push(name);
            i = next;
            if self.is_word(i, &["AS"]) {
                i += 1;
            }
            if kind == NameKind::Table && self.ident(i).is_some() {
                i += 1;
            }
            if !self.is_punct(i, ',') {
                return;
            }
            i += 1;
        }
    }

    fn names(&self) -> Vec<SqlName> {
        let mut out = Vec::new();
        // The function each open parenthesis belongs to, for FROM inside EXTRACT(..).
        let mut calls: Vec<String> = Vec::new();
        for i in 0..self.tokens.len() {
            if self.is_punct(i, '(') {
                calls.push(
                    i.checked_sub(1)
                        .and_then(|j| self.word(j))
                        .unwrap_or_default(),
                );
                continue;
            }
            if self.is_punct(i, ')') {
                calls.pop();
                continue;
            }
            let Some(word) = self.word(i) else { continue };
            match word.as_str() {
                "FROM" => {
                    let in_function = calls
                        .last()
                        .is_some_and(|c| FROM_FUNCTIONS.contains(&c.as_str()));
                    let distinct = i
                        .checked_sub(1)
                        .is_some_and(|j| self.is_word(j, &["DISTINCT"]));
                    if !in_function && !distinct {
                        self.name_list(i + 1, NameKind::Table, &mut out);
                    }
                }
                "JOIN" | "INTO" | "REFERENCES" | "COPY" => {
                    self.name_list_one(i + 1, &mut out);
                }
                "UPDATE" | "TABLE" | "TRUNCATE" | "LOCK" => {
                    let next = self.skip_modifiers(i + 1);
                    if !self.is_word(next, &["SET", "TABLE"]) {
                        self.name_list(next, NameKind::Table, &mut out);
                    }
                }
                "INDEX" => {
                    // CREATE INDEX [name] ON table (..)
                    let on = (i + 1..self.tokens.len().min(i + 8))
                        .find(|&j| self.is_word(j, &["ON"]) || self.is_punct(j, '('));
                    if let Some(on) = on.filter(|&j| self.is_word(j, &["ON"])) {
                        self.name_list_one(on + 1, &mut out);
                    }
                }
                "SCHEMA" => self.name_list(i + 1, NameKind::Schema, &mut out),
                "SEARCH_PATH" => self.search_path(i + 1, &mut out),
                _ => {}
            }
        }
        out
    }

    fn name_list_one(&self, i: usize, out: &mut Vec<SqlName>) {
        let i = self.skip_modifiers(i);
        if let Some((name, _)) = self.qualified(i, NameKind::Table) {
            out.push(name);
        }
    }

    /// `search_path TO a, "b", 'c'` / `search_path = ..`.
    fn search_path(&self, mut i: usize, out: &mut Vec<SqlName>) {
        if self.is_word(i, &["TO"]) || self.is_punct(i, '=') {
            i += 1;
        }
        while let Some(token) = self.tokens.get(i) {
            let schema = match &token.token {
                Token::Word(w) | Token::Quoted(w) | Token::Str(w) => w.clone(),
                Token::Punct(_) => return,
            };
            // 'a, b' as one string lists several schemas.
            for name in schema.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push(SqlName {
                    kind: NameKind::Schema,
                    schema: Some(name.to_owned()),
                    name: name.to_owned(),
                    written: name.to_owned(),
                });
            }
            if !self.is_punct(i + 1, ',') {
                return;
            }
            i += 2;
        }
    }
}

/// Whether `text` reads as SQL (see the module docs).
pub fn looks_like_sql(text: &str) -> bool {
    Reader {
        sql: text,
        tokens: tokenize(text),
    }
    .looks_like_sql()
}

/// The tables and schemas `text` names, if it looks like SQL; nothing otherwise.
pub fn names(text: &str) -> Vec<SqlName> {
    let reader = Reader {
        sql: text,
        tokens: tokenize(text),
    };
    if reader.looks_like_sql() {
        reader.names()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(sql: &str) -> Vec<String> {
        names(sql)
            .into_iter()
            .map(|n| match (n.kind, n.schema) {
                (NameKind::Table, Some(schema)) => format!("{schema}.{}", n.name),
                (NameKind::Table, None) => n.name,
                (NameKind::Schema, _) => format!("schema {}", n.name),
            })
            .collect()
    }

    #[test]
    fn english_is_not_sql() {
        for text in [
            "user not found",
            "failed to update the order",
            "select a product",
            "delete failed: users table is locked",
            "Order from customer",
            "",
        ] {
            assert!(!looks_like_sql(text), "{text}");
            assert!(names(text).is_empty());
        }
    }

    #[test]
    fn finds_tables_in_dml() {
        assert_eq!(
            tables("SELECT u.id FROM auth.users u JOIN orders o ON o.user_id = u.id"),
            ["auth.users", "orders"]
        );
        assert_eq!(
            tables("select * from a, b as bee, c where x = 1"),
            ["a", "b", "c"]
        );
        assert_eq!(
            tables("INSERT INTO \"catalog\".\"products\" (id) VALUES ($1)"),
            ["catalog.products"]
        );
        assert_eq!(tables("UPDATE ONLY stock SET qty = qty - 1"), ["stock"]);
        assert_eq!(
            tables("DELETE FROM payments.charges WHERE id = $1"),
            ["payments.charges"]
        );
        assert_eq!(
            tables("INSERT INTO outbox (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET x = 1"),
            ["outbox"]
        );
        assert_eq!(
            tables("SELECT * FROM orders WHERE id = $1 FOR UPDATE SKIP LOCKED"),
            ["orders"]
        );
    }

    #[test]
    fn ignores_from_inside_functions_strings_and_comments() {
        assert_eq!(
            tables("SELECT EXTRACT(YEAR FROM created_at), 'FROM users' FROM orders -- FROM x"),
            ["orders"]
        );
        assert_eq!(
            tables("SELECT a IS DISTINCT FROM b FROM t /* JOIN y */"),
            ["t"]
        );
    }

    #[test]
    fn finds_tables_and_schemas_in_ddl() {
        assert_eq!(
            tables(
                "CREATE TABLE IF NOT EXISTS orders.lines (id uuid REFERENCES catalog.products (id))"
            ),
            ["orders.lines", "catalog.products"]
        );
        assert_eq!(
            tables("CREATE UNIQUE INDEX idx ON auth.users (email)"),
            ["auth.users"]
        );
        assert_eq!(tables("CREATE SCHEMA IF NOT EXISTS auth"), ["schema auth"]);
        assert_eq!(
            tables("GRANT USAGE ON SCHEMA auth TO orders_role"),
            ["schema auth"]
        );
        assert_eq!(
            tables("SET search_path TO orders, 'public'"),
            ["schema orders", "schema public"]
        );
        assert_eq!(tables("TRUNCATE TABLE a, b"), ["a", "b"]);
    }

    #[test]
    fn keeps_the_written_form() {
        let found = names("SELECT 1 FROM \"auth\" . users");
        assert_eq!(found[0].written, "\"auth\" . users");
    }
}
