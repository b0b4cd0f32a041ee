//! The settings of a `kind = "postgres"` source, exactly as dr.toml spells them.

use std::collections::BTreeMap;

use dr_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::conn::PgConnection;

/// `[sources.NAME]` of `kind = "postgres"` (without the generic keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresSettings {
    /// `postgres://user@host:port/dbname` (a password here works, `password_env` is better).
    pub url: String,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Exact row counts (default) or the planner's estimates.
    #[serde(default = "yes")]
    pub exact_counts: bool,
    /// Also dump roles and tablespaces (needs a superuser; default true).
    #[serde(default = "yes")]
    pub globals: bool,
    /// `"schema.table" = "column"`: the newest value of each is recorded and checked after
    /// a restore.
    #[serde(default)]
    pub timestamp_columns: BTreeMap<String, String>,
    /// `logical` (pg_dump of one database, default) or `physical` (pg_basebackup of the
    /// whole cluster, for point-in-time recovery with the WAL archive).
    #[serde(default)]
    pub method: PgMethod,
    /// Physical: start the base backup with a fast checkpoint (default) or a spread one.
    #[serde(default = "yes")]
    pub fast_checkpoint: bool,
    /// Physical: how many archived WAL segments `wal-fetch` fetches ahead while recovery
    /// replays (default 0, one at a time: the prefetcher is experimental). They wait in `pg_wal/.dr-prefetch/`.
    #[serde(default = "default_wal_prefetch")]
    pub wal_prefetch: usize,
}

fn default_wal_prefetch() -> usize {
    crate::DEFAULT_WAL_PREFETCH
}

/// How a PostgreSQL source is backed up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgMethod {
    /// pg_dump of one database.
    #[default]
    Logical,
    /// pg_basebackup of the cluster plus the WAL archive.
    Physical,
}

fn yes() -> bool {
    true
}

/// What a wrong password shows as: the server's words (pg_dump, psql) and
/// [`PgConnection::explain`]'s.
const AUTH_FAILURES: [&str; 3] = [
    "password authentication failed",
    "invalid password",
    "wrong password for user",
];

impl PostgresSettings {
    /// Settings for the database at `url`, every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresSettings {
            url: url.into(),
            password_env: None,
            exact_counts: true,
            globals: true,
            timestamp_columns: BTreeMap::new(),
            method: PgMethod::Logical,
            fast_checkpoint: true,
            wal_prefetch: crate::DEFAULT_WAL_PREFETCH,
        }
    }

    /// Checks what can be checked without a server: the URL parses.
    ///
    /// # Errors
    /// [`Error::Usage`] for a URL that is not a PostgreSQL URL.
    pub fn check(&self) -> Result<()> {
        PgConnection::from_url(&self.url).map(|_| ())
    }

    /// The source's connection, with the password of `password_env` when one is named (read
    /// now, so a variable set after the source was built counts).
    ///
    /// # Errors
    /// [`Error::Usage`] for a bad URL or a `password_env` variable that is not set.
    pub fn connection(&self) -> Result<PgConnection> {
        let conn = PgConnection::from_url(&self.url)?;
        match &self.password_env {
            None => Ok(conn),
            Some(var) => std::env::var(var)
                .map(|p| conn.with_password(p))
                .map_err(|_| {
                    Error::Usage(format!(
                        "the environment variable {var} (password_env) is not set"
                    ))
                }),
        }
    }

    /// The source's connection, or the same database name on the server at `server`.
    ///
    /// # Errors
    /// As [`PostgresSettings::connection`], and a bad `server` URL.
    pub fn connection_on(&self, server: Option<&str>) -> Result<PgConnection> {
        let own = self.connection()?;
        match server {
            None => Ok(own),
            Some(url) => Ok(PgConnection::from_url(url)?.with_database(own.database())),
        }
    }

    /// Adds where the password came from to an authentication failure: a wrong password
    /// from `password_env` names the variable (never its value).
    pub fn explain_auth(&self, error: dr_core::Error) -> dr_core::Error {
        let message = error.to_string();
        if !AUTH_FAILURES.iter().any(|p| message.contains(p)) {
            return error;
        }
        let hint = match &self.password_env {
            Some(var) => format!(
                " (the password comes from the environment variable {var}, named by password_env: check its value)"
            ),
            None => " (the password comes from the source's url: check it, or set password_env)"
                .to_owned(),
        };
        super::append(error, &hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_cli_ones_and_typos_are_refused() {
        let parsed: PostgresSettings =
            serde_json::from_value(serde_json::json!({"url": "postgres://a@h/db"})).unwrap();
        assert_eq!(parsed, PostgresSettings::new("postgres://a@h/db"));
        let err = serde_json::from_value::<PostgresSettings>(
            serde_json::json!({"url": "postgres://a@h/db", "fast_checkpont": false}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("fast_checkpont"), "{err}");
        let physical: PostgresSettings = serde_json::from_value(
            serde_json::json!({"url": "postgres://a@h/db", "method": "physical"}),
        )
        .unwrap();
        assert_eq!(physical.method, PgMethod::Physical);
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let mut settings = PostgresSettings::new("postgres://a@h/db");
        settings.password_env = Some("DR_TEST_SURELY_UNSET_VARIABLE".into());
        let err = settings.connection().unwrap_err();
        assert!(
            err.to_string().contains("DR_TEST_SURELY_UNSET_VARIABLE"),
            "{err}"
        );
        let explained = settings.explain_auth(Error::backend(
            "postgres",
            "connect",
            "password authentication failed for user \"a\"",
        ));
        assert!(
            explained.to_string().contains("named by password_env"),
            "{explained}"
        );
    }
}
