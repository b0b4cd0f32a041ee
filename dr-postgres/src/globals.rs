//! Applying a backup's `globals` artifact (`pg_dumpall --globals-only`) to a server: roles
//! the server lacks are created with their attributes, comments, settings and memberships;
//! roles it has are left exactly as they are; passwords only on request; tablespaces are
//! not created (their directories are the server's business) but listed.

use dr_core::Refusal;
use dr_core::{BackupReader, Error, Result};
use serde::Serialize;

use crate::backup::GLOBALS_ARTIFACT;
use crate::conn::PgConnection;
use crate::dbprops::{existing_roles, run_in_transaction};

/// What [`apply_globals`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GlobalsOutcome {
    /// Roles created.
    pub created: Vec<String>,
    /// Roles of the backup the server already had: left as they are.
    pub existing: Vec<String>,
    /// Memberships granted (`role > member`).
    pub memberships: Vec<String>,
    /// Whether password hashes were restored (only with `with_passwords`).
    pub passwords_restored: bool,
    /// Statements left out, with the reason (tablespaces, unknown statements).
    pub skipped: Vec<String>,
}

/// Applies the roles of `backup` to the server of `conn`, in one transaction: a failure
/// leaves the server's roles as they were.
///
/// # Errors
/// [`Error::Refused`] for a backup without globals; [`Error::Restore`] naming the statement
/// that failed; store and connection errors.
pub async fn apply_globals(
    conn: &PgConnection,
    backup: &BackupReader,
    with_passwords: bool,
) -> Result<GlobalsOutcome> {
    if backup.manifest().artifact(GLOBALS_ARTIFACT).is_err() {
        return Err(Error::refused(
            Refusal::Unavailable,
            format!(
                "backup {} holds no roles (it was taken with globals = false): restore another backup, or create the roles by hand",
                backup.id()
            ),
        ));
    }
    let mut bytes = Vec::new();
    backup.copy_artifact(GLOBALS_ARTIFACT, &mut bytes).await?;
    let text = String::from_utf8_lossy(&bytes);
    let client = conn.with_database("postgres").connect().await?;
    let existing = existing_roles(&client, conn).await?;
    let plan = plan(&split_statements(&text), &existing, with_passwords);
    run_in_transaction(&client, &plan.sql).await.map_err(|e| {
        Error::restore(
            "postgres",
            format!(
                "creating the roles of backup {} on {conn} failed at {e}; no role was changed",
                backup.id()
            ),
        )
    })?;
    Ok(plan.outcome)
}

struct Plan {
    sql: Vec<String>,
    outcome: GlobalsOutcome,
}

fn plan(statements: &[String], existing: &[String], with_passwords: bool) -> Plan {
    let mut outcome = GlobalsOutcome {
        passwords_restored: with_passwords,
        ..GlobalsOutcome::default()
    };
    let is_new = |role: &str, created: &[String]| created.iter().any(|c| c == role);
    let mut sql = Vec::new();
    for statement in statements {
        let words = Words(statement);
        if words.starts(&["SET"]) {
            continue;
        }
        if let Some(role) = words.name_after(&["CREATE", "ROLE"]) {
            if existing.contains(&role) {
                outcome.existing.push(role);
            } else {
                outcome.created.push(role);
                sql.push(statement.clone());
            }
        } else if let Some(role) = words
            .name_after(&["ALTER", "ROLE"])
            .or_else(|| words.name_after(&["COMMENT", "ON", "ROLE"]))
        {
            if is_new(&role, &outcome.created) {
                sql.push(if with_passwords {
                    statement.clone()
                } else {
                    without_password(statement)
                });
            }
        } else if let Some((granted, member, grantor)) = membership(&words) {
            if is_new(&granted, &outcome.created) || is_new(&member, &outcome.created) {
                let known =
                    |r: &str| existing.iter().any(|e| e == r) || is_new(r, &outcome.created);
                let statement = match grantor {
                    // A grantor the server lacks: granted by the restoring role instead.
                    Some((g, at)) if !known(&g) => statement[..at].trim_end().to_owned(),
                    _ => statement.clone(),
                };
                outcome.memberships.push(format!("{granted} > {member}"));
                sql.push(statement);
            }
        } else {
            let reason = if statement.contains("TABLESPACE") {
                "tablespaces are not created: create the directory on the server and run it by hand"
            } else {
                "not a role statement dr applies"
            };
            outcome
                .skipped
                .push(format!("{} ({reason})", first_line(statement)));
        }
    }
    Plan { sql, outcome }
}

fn first_line(statement: &str) -> String {
    let line = statement.lines().next().unwrap_or_default();
    crate::dbprops::redact(line)
}

/// The grantor of a membership and where its `GRANTED BY` clause starts.
type Grantor = Option<(String, usize)>;

/// `GRANT a TO b [WITH ...] [GRANTED BY c]`: a, b, and c with where its clause starts.
fn membership(words: &Words) -> Option<(String, String, Grantor)> {
    let rest = words.0.strip_prefix("GRANT ")?;
    if rest.contains(" ON ") {
        return None;
    }
    let (granted, rest) = take_ident(rest)?;
    let rest = rest.trim_start().strip_prefix("TO ")?;
    let (member, _) = take_ident(rest)?;
    let grantor = words.0.rfind(" GRANTED BY ").and_then(|at| {
        let (g, _) = take_ident(&words.0[at + " GRANTED BY ".len()..])?;
        Some((g, at))
    });
    Some((granted, member, grantor))
}

/// The statement with a `PASSWORD '...'` clause removed.
fn without_password(statement: &str) -> String {
    let Some(at) = statement.find(" PASSWORD '") else {
        return statement.to_owned();
    };
    let after = &statement[at + " PASSWORD '".len()..];
    let mut end = None;
    let mut chars = after.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|p| p.1) == Some('\'') {
                chars.next();
                continue;
            }
            end = Some(i + 1);
            break;
        }
    }
    match end {
        Some(end) => format!("{}{}", &statement[..at], &after[end..]),
        None => statement[..at].to_owned(),
    }
}

struct Words<'a>(&'a str);

impl Words<'_> {
    fn starts(&self, words: &[&str]) -> bool {
        let mut rest = self.0;
        for word in words {
            let Some(r) = rest.strip_prefix(word) else {
                return false;
            };
            if !r.is_empty() && !r.starts_with(char::is_whitespace) {
                return false;
            }
            rest = r.trim_start();
        }
        true
    }

    fn name_after(&self, words: &[&str]) -> Option<String> {
        if !self.starts(words) {
            return None;
        }
        let mut rest = self.0;
        for word in words {
            rest = rest.strip_prefix(word)?.trim_start();
        }
        take_ident(rest).map(|(name, _)| name)
    }
}

/// An identifier as pg_dumpall writes it (double-quoted when needed), and the rest.
fn take_ident(text: &str) -> Option<(String, &str)> {
    if let Some(rest) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|p| p.1) == Some('"') {
                    name.push('"');
                    chars.next();
                    continue;
                }
                return Some((name, &rest[i + 1..]));
            }
            name.push(c);
        }
        return None;
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == ';')
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
}

/// Splits a plain SQL script into statements (without the `;`), leaving out comments and
/// psql meta-commands (`\restrict`, `\connect`), respecting quoted strings and identifiers.
pub(crate) fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut single, mut double) = (false, false);
    for line in script.lines() {
        let outside = !single && !double;
        if outside
            && current.trim().is_empty()
            && (line.starts_with("--") || line.starts_with('\\'))
        {
            continue;
        }
        for c in line.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                ';' if !single && !double => {
                    let statement = std::mem::take(&mut current).trim().to_owned();
                    if !statement.is_empty() {
                        out.push(statement);
                    }
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        current.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\nSET default_transaction_read_only = off;\n\
CREATE ROLE app_owner;\nALTER ROLE app_owner WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:x=';\n\
CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM';\n\
CREATE ROLE \"odd;role\";\nCOMMENT ON ROLE \"odd;role\" IS 'it''s;\nmulti';\n\
ALTER ROLE \"odd;role\" SET statement_timeout TO '5s';\n\
GRANT app_owner TO \"odd;role\" GRANTED BY gone;\nGRANT app_owner TO postgres GRANTED BY postgres;\n\
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';\n\\unrestrict abc\n";

    #[test]
    fn new_roles_are_created_existing_ones_left_alone_passwords_only_on_request() {
        let statements = split_statements(DUMP);
        let plan = plan(&statements, &["postgres".into()], false);
        assert_eq!(plan.outcome.created, ["app_owner", "odd;role"]);
        assert_eq!(plan.outcome.existing, ["postgres"]);
        assert_eq!(
            plan.outcome.memberships,
            ["app_owner > odd;role", "app_owner > postgres"]
        );
        assert_eq!(
            plan.sql,
            [
                "CREATE ROLE app_owner",
                "ALTER ROLE app_owner WITH NOSUPERUSER INHERIT LOGIN",
                "CREATE ROLE \"odd;role\"",
                "COMMENT ON ROLE \"odd;role\" IS 'it''s;\nmulti'",
                "ALTER ROLE \"odd;role\" SET statement_timeout TO '5s'",
                "GRANT app_owner TO \"odd;role\"",
                "GRANT app_owner TO postgres GRANTED BY postgres",
            ]
        );
        assert_eq!(plan.outcome.skipped.len(), 1, "{:?}", plan.outcome.skipped);
        let with = super::plan(&statements, &["postgres".into()], true);
        assert!(with.sql[1].ends_with("PASSWORD 'SCRAM-SHA-256$4096:x='"));
    }
}
