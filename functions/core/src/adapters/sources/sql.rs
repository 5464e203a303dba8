//! The named parameters of a source's queries (`:account`, `:profile`, `:subprofile`,
//! `:email`), rewritten into PostgreSQL's numbered placeholders (`$1`, `$2`, …) so that values
//! are always bound, never pasted into the SQL text.
//!
//! The rewriting reads the query as PostgreSQL's lexer does, far enough to know where a colon
//! means a parameter: never inside a string ('…', E'…', $tag$…$tag$), a quoted identifier, a
//! comment or square brackets (array slices such as `tags[1:n]`); `::` is a cast and `:=` a
//! named argument. Any other `:name` is refused, so a typo cannot reach the database.
//!
//! For MySQL and MariaDB, [`rewrite_mysql`] reads the query as their lexer does ('…' and "…"
//! strings with backslash escapes, `…` identifiers, `#`, `-- ` and `/* */` comments) and
//! writes a `?` for each parameter, once per use.

use std::fmt;

/// A value a query can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    /// The account (tenant) of the request.
    Account,
    /// The profile id of a profile request.
    Profile,
    /// The subprofile id of a subprofile request.
    Subprofile,
    /// The address of an e-mail request.
    Email,
}

impl Param {
    /// Every parameter.
    pub const ALL: [Self; 4] = [Self::Account, Self::Profile, Self::Subprofile, Self::Email];

    /// The name after the colon.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Profile => "profile",
            Self::Subprofile => "subprofile",
            Self::Email => "email",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", self.name())
    }
}

/// A query with numbered placeholders: `params[i]` is bound to `$i+1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The SQL, with a trailing semicolon removed.
    pub sql: String,
    /// The parameter of each placeholder, in order.
    pub params: Vec<Param>,
}

/// Why a query cannot be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// `:name` that is no parameter.
    #[error("unknown parameter :{0}")]
    UnknownParameter(String),
    /// `$1`: the numbering is ours.
    #[error("numbered placeholders ($1) are not allowed; use :account, :profile, :subprofile or :email")]
    Positional,
    /// `?`: the placeholders are ours.
    #[error("placeholders (?) are not allowed; use :account, :profile, :subprofile or :email")]
    Question,
    /// A string, quoted identifier or comment that does not end.
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    /// More than one statement.
    #[error("one statement per query: remove what follows the semicolon")]
    SeveralStatements,
    /// Nothing but blanks and comments.
    #[error("the query is empty")]
    Empty,
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_char(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Rewrites the named parameters of a query into numbered placeholders; the same name twice
/// gets the same number.
///
/// # Errors
/// When the query uses an unknown `:name` or a `$n`, holds a second statement, or leaves a
/// string, identifier or comment open.
pub fn rewrite(query: &str) -> Result<Rewritten, SqlError> {
    let mut brackets = 0usize;
    let lex = |bytes: &[u8], i: usize| {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        Ok(match b {
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && (i < 2 || !ident_char(bytes[i - 2]));
                Lexeme::Quoted(skip_string(bytes, i + 1, escapes)?)
            }
            b'"' => Lexeme::Quoted(skip_quoted(bytes, i + 1, b'"').ok_or(SqlError::Unterminated("quoted identifier"))?),
            b'-' if next == Some(b'-') => Lexeme::Comment(line_end(bytes, i)),
            b'/' if next == Some(b'*') => {
                Lexeme::Comment(skip_comment(bytes, i + 2).ok_or(SqlError::Unterminated("comment"))?)
            }
            b'$' if i == 0 || !ident_char(bytes[i - 1]) => {
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    return Err(SqlError::Positional);
                }
                dollar_quote(bytes, i)?.map_or(Lexeme::Other(1), Lexeme::Quoted)
            }
            b'[' => {
                brackets += 1;
                Lexeme::Other(1)
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                Lexeme::Other(1)
            }
            b':' if next == Some(b':') => Lexeme::Other(2),
            b':' if brackets == 0 && next.is_some_and(ident_start) => Lexeme::Param(name_end(bytes, i)),
            _ => Lexeme::Other(1),
        })
    };
    let mut params: Vec<Param> = Vec::new();
    let sql = scan(query, lex, |param, out| {
        let number = match params.iter().position(|p| *p == param) {
            Some(n) => n + 1,
            None => {
                params.push(param);
                params.len()
            }
        };
        out.push('$');
        out.push_str(&number.to_string());
    })?;
    Ok(Rewritten { sql, params })
}

/// What a dialect's lexer finds at a byte of a query.
enum Lexeme {
    /// A string, a quoted identifier or any quoted text, ending before this index.
    Quoted(usize),
    /// A comment, ending before this index.
    Comment(usize),
    /// A named parameter (`:name`), whose name ends before this index.
    Param(usize),
    /// Anything else, this many bytes long.
    Other(usize),
}

/// Walks a query with a dialect's lexer (`lex`, given the bytes and an index): copies it with
/// each named parameter replaced by what `placeholder` writes, drops a trailing semicolon and
/// what follows it (blanks and comments only), and refuses an empty query.
fn scan(
    query: &str,
    mut lex: impl FnMut(&[u8], usize) -> Result<Lexeme, SqlError>,
    mut placeholder: impl FnMut(Param, &mut String),
) -> Result<String, SqlError> {
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(query.len() + 8);
    // Copied verbatim from `start` up to each point where the text changes.
    let (mut i, mut start) = (0, 0);
    let mut ended = false;
    let mut significant = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b';' {
            if !ended {
                out.push_str(&query[start..i]);
                ended = true;
            }
            i += 1;
            start = i;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        match lex(bytes, i) {
            Ok(Lexeme::Comment(end)) => i = end,
            // A comment after the statement may follow; one left open is still an open comment.
            Err(error @ SqlError::Unterminated("comment")) => return Err(error),
            _ if ended => return Err(SqlError::SeveralStatements),
            Err(error) => return Err(error),
            Ok(Lexeme::Quoted(end)) => {
                i = end;
                significant = true;
            }
            Ok(Lexeme::Other(len)) => {
                i += len;
                significant = true;
            }
            Ok(Lexeme::Param(end)) => {
                let name = &query[i + 1..end];
                let param = Param::named(name).ok_or_else(|| SqlError::UnknownParameter(name.to_owned()))?;
                out.push_str(&query[start..i]);
                placeholder(param, &mut out);
                i = end;
                start = i;
                significant = true;
            }
        }
    }
    if !ended {
        out.push_str(&query[start..]);
    }
    if !significant {
        return Err(SqlError::Empty);
    }
    Ok(out.trim_end().to_owned())
}

/// Where the line that `i` is on ends.
fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |n| i + n)
}

/// Where the name of the parameter whose colon is at `i` ends.
fn name_end(bytes: &[u8], i: usize) -> usize {
    bytes[i + 1..].iter().position(|&c| !ident_char(c)).map_or(bytes.len(), |n| i + 1 + n)
}

/// A database's message about a query in the words of its mapping: each numbered placeholder
/// (`$2`) becomes the parameter written there (`:profile`), and a parameter whose type the
/// server cannot deduce (or deduces twice, differently) gets the advice to cast it.
#[must_use]
pub fn in_user_words(message: &str, params: &[Param]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut named = None;
    let mut rest = message;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let param = rest[at + 1..at + 1 + digits].parse::<usize>().ok().and_then(|n| params.get(n.checked_sub(1)?));
        match param {
            Some(param) => {
                out.push_str(&param.to_string());
                named = named.or(Some(*param));
            }
            None => out.push_str(&rest[at..=at + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    if let Some(param) = named
        && (message.contains("could not determine data type of parameter")
            || message.contains("inconsistent types deduced for parameter"))
    {
        let cast = if param == Param::Email { "text" } else { "bigint" };
        out.push_str(&format!("; add a cast to say which type it is, such as {param}::{cast}"));
    }
    out
}

/// Rewrites the named parameters of a MySQL or MariaDB query into `?` placeholders, one per
/// use: `params` holds the parameter of each `?` in order (a name used twice is there twice).
///
/// # Errors
/// When the query uses an unknown `:name` or a `?`, holds a second statement, or leaves a
/// string, identifier or comment open.
pub fn rewrite_mysql(query: &str) -> Result<Rewritten, SqlError> {
    let lex = |bytes: &[u8], i: usize| {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        Ok(match b {
            b'#' => Lexeme::Comment(line_end(bytes, i)),
            b'-' if next == Some(b'-') && bytes.get(i + 2).is_none_or(u8::is_ascii_whitespace) => {
                Lexeme::Comment(line_end(bytes, i))
            }
            b'/' if next == Some(b'*') => Lexeme::Comment(
                bytes[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map(|n| i + 2 + n + 2)
                    .ok_or(SqlError::Unterminated("comment"))?,
            ),
            b'\'' | b'"' => Lexeme::Quoted(skip_escaped(bytes, i + 1, b).ok_or(SqlError::Unterminated("string"))?),
            b'`' => Lexeme::Quoted(skip_quoted(bytes, i + 1, b'`').ok_or(SqlError::Unterminated("quoted identifier"))?),
            b'?' => return Err(SqlError::Question),
            b':' if matches!(next, Some(b':' | b'=')) => Lexeme::Other(2),
            b':' if next.is_some_and(ident_start) => Lexeme::Param(name_end(bytes, i)),
            _ => Lexeme::Other(1),
        })
    };
    let mut params = Vec::new();
    let sql = scan(query, lex, |param, out| {
        params.push(param);
        out.push('?');
    })?;
    Ok(Rewritten { sql, params })
}

/// The end of a MySQL string that starts at `i` (after its `quote`): a backslash escapes the
/// next character and a doubled quote stands for itself.
fn skip_escaped(bytes: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The end of a '…' string that starts at `i` (after the quote): `''` is a quote; in E'…'
/// strings a backslash escapes the next character.
fn skip_string(bytes: &[u8], mut i: usize, escapes: bool) -> Result<usize, SqlError> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(SqlError::Unterminated("string"))
}

/// The end of a quoted identifier; a doubled quote stands for itself.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The end of a block comment whose body starts at `i`; block comments nest.
fn skip_comment(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 1;
    while i < bytes.len() {
        if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// If a dollar-quoted string (`$$…$$`, `$tag$…$tag$`) starts at `i`, its end.
fn dollar_quote(bytes: &[u8], i: usize) -> Result<Option<usize>, SqlError> {
    let mut j = i + 1;
    if j < bytes.len() && ident_start(bytes[j]) {
        while j < bytes.len() && ident_char(bytes[j]) && bytes[j] != b'$' {
            j += 1;
        }
    }
    if bytes.get(j) != Some(&b'$') {
        return Ok(None);
    }
    let tag = &bytes[i..=j];
    let body = j + 1;
    let end = bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .ok_or(SqlError::Unterminated("dollar-quoted string"))?;
    Ok(Some(body + end + tag.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ok(query: &str) -> (String, Vec<Param>) {
        let rewritten = rewrite(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        (rewritten.sql, rewritten.params)
    }

    #[test]
    fn named_parameters_become_numbered_placeholders_reused_for_the_same_name() {
        let (sql, params) = ok("SELECT 1 FROM c WHERE tenant = :account AND (id = :profile OR parent = :profile)");
        assert_eq!(sql, "SELECT 1 FROM c WHERE tenant = $1 AND (id = $2 OR parent = $2)");
        assert_eq!(params, vec![Param::Account, Param::Profile]);
        let (sql, params) = ok("SELECT * FROM m WHERE lower(address)=lower(:email)");
        assert_eq!(sql, "SELECT * FROM m WHERE lower(address)=lower($1)");
        assert_eq!(params, vec![Param::Email]);
    }

    #[test]
    fn casts_named_arguments_and_slices_are_not_parameters() {
        let (sql, params) = ok("SELECT x::text, f(a := 1), tags[1:2], tags[lo:hi], :profile::bigint FROM t");
        assert_eq!(sql, "SELECT x::text, f(a := 1), tags[1:2], tags[lo:hi], $1::bigint FROM t");
        assert_eq!(params, vec![Param::Profile]);
        let (sql, _) = ok("SELECT a::int[]::text FROM t WHERE b = :account::int");
        assert_eq!(sql, "SELECT a::int[]::text FROM t WHERE b = $1::int");
    }

    #[test]
    fn colons_inside_strings_identifiers_and_comments_are_left_alone() {
        let query = concat!(
            "SELECT ':profile', E'it\\'s :email', 'a''b:account', \"col:email\", $$ :profile $$, $q$ :email $q$ -- :nope\n",
            "/* :nope /* nested :nope */ still */ FROM t WHERE id = :profile"
        );
        let (sql, params) = ok(query);
        assert_eq!(params, vec![Param::Profile]);
        assert!(sql.ends_with("WHERE id = $1"), "{sql}");
        assert!(sql.contains("E'it\\'s :email'"), "{sql}");
        assert!(sql.contains("$q$ :email $q$"), "{sql}");
    }

    #[test]
    fn a_standard_string_does_not_treat_a_backslash_as_an_escape() {
        let (sql, params) = ok(r"SELECT 'a\' FROM t WHERE id = :profile");
        assert_eq!(sql, r"SELECT 'a\' FROM t WHERE id = $1");
        assert_eq!(params, vec![Param::Profile]);
    }

    #[test]
    fn identifiers_with_dollars_are_not_dollar_quotes() {
        let (sql, params) = ok("SELECT a$b, c$ FROM t WHERE id = :subprofile");
        assert_eq!(sql, "SELECT a$b, c$ FROM t WHERE id = $1");
        assert_eq!(params, vec![Param::Subprofile]);
    }

    #[test]
    fn a_trailing_semicolon_is_dropped_and_a_second_statement_refused() {
        assert_eq!(ok("SELECT 1 WHERE :account > 0 ;  -- done\n").0, "SELECT 1 WHERE $1 > 0");
        assert_eq!(rewrite("SELECT 1; DROP TABLE customer"), Err(SqlError::SeveralStatements));
        assert_eq!(ok("SELECT ';'").0, "SELECT ';'");
        assert_eq!(rewrite("SELECT 1; /* open"), Err(SqlError::Unterminated("comment")));
        assert_eq!(rewrite_mysql("SELECT 1; /* open"), Err(SqlError::Unterminated("comment")));
        assert_eq!(rewrite_mysql("SELECT 1; 'open"), Err(SqlError::SeveralStatements));
    }

    #[test]
    fn unknown_names_positional_placeholders_and_open_strings_are_refused() {
        assert_eq!(rewrite("SELECT 1 WHERE id = :profil"), Err(SqlError::UnknownParameter("profil".into())));
        assert_eq!(rewrite("SELECT 1 WHERE id = $1"), Err(SqlError::Positional));
        assert_eq!(rewrite("SELECT 'open"), Err(SqlError::Unterminated("string")));
        assert_eq!(rewrite("SELECT \"open"), Err(SqlError::Unterminated("quoted identifier")));
        assert_eq!(rewrite("SELECT 1 /* open"), Err(SqlError::Unterminated("comment")));
        assert_eq!(rewrite("SELECT $x$ open"), Err(SqlError::Unterminated("dollar-quoted string")));
        assert_eq!(rewrite("  -- nothing\n"), Err(SqlError::Empty));
    }

    #[test]
    fn mysql_queries_get_a_question_mark_per_use_outside_strings_identifiers_and_comments() {
        let rewritten = rewrite_mysql(
            "SELECT ':email', \"it\\\" :x\", `a``:b` FROM t -- :nope\n# :no\n/* :none */ \
             WHERE a = :account AND (p = :profile OR q = :profile) AND @v := 1;",
        )
        .expect("rewrites");
        assert_eq!(
            rewritten.sql,
            "SELECT ':email', \"it\\\" :x\", `a``:b` FROM t -- :nope\n# :no\n/* :none */ \
             WHERE a = ? AND (p = ? OR q = ?) AND @v := 1"
        );
        assert_eq!(rewritten.params, [Param::Account, Param::Profile, Param::Profile]);
        assert_eq!(rewrite_mysql("SELECT 1 FROM t WHERE a = ?"), Err(SqlError::Question));
        assert_eq!(rewrite_mysql("SELECT :who"), Err(SqlError::UnknownParameter("who".into())));
        assert_eq!(rewrite_mysql("SELECT 1; DROP TABLE t"), Err(SqlError::SeveralStatements));
        assert_eq!(rewrite_mysql("SELECT 'open"), Err(SqlError::Unterminated("string")));
        assert_eq!(rewrite_mysql("SELECT 2--1 AS n").map(|r| r.sql), Ok("SELECT 2--1 AS n".to_owned()));
    }

    #[test]
    fn database_messages_name_the_parameters_the_mapping_wrote() {
        let params = [Param::Account, Param::Profile];
        assert_eq!(
            in_user_words("inconsistent types deduced for parameter $2 (SQLSTATE 42P08)", &params),
            "inconsistent types deduced for parameter :profile (SQLSTATE 42P08); add a cast to say which type it is, \
             such as :profile::bigint"
        );
        assert_eq!(
            in_user_words("could not determine data type of parameter $1 (SQLSTATE 42P18)", &[Param::Email]),
            "could not determine data type of parameter :email (SQLSTATE 42P18); add a cast to say which type it is, \
             such as :email::text"
        );
        assert_eq!(in_user_words("costs $5 and $ more; $2 = $1", &params), "costs $5 and $ more; :profile = :account");
    }

    #[test]
    fn a_value_never_reaches_the_text() {
        // The rewriting knows nothing of values: the text only ever gains `$n`.
        let (sql, _) = ok("SELECT * FROM m WHERE address = :email");
        assert_eq!(sql, "SELECT * FROM m WHERE address = $1");
    }
}
