//! Connections from a URL; the password only ever travels in the child's environment.

use std::time::Duration;

use dr_core::{Error, Result};
use tokio::process::Command;

/// Where a PostgreSQL database is: `postgres://user:password@host:port/dbname`.
/// Debug and Display never show the password.
#[derive(Clone)]
pub struct PgConnection {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: String,
}

impl PgConnection {
    /// Parses a `postgres://` or `postgresql://` URL.
    ///
    /// # Errors
    /// [`Error::InvalidLocation`] for anything else, with the password redacted.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |detail: &str| Error::InvalidLocation {
            location: dr_core::redact_url(url),
            detail: detail.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(invalid("use postgres://user:password@host:port/dbname"));
        }
        let decode = dr_core::percent_decode;
        let dbname = parsed.path().trim_start_matches('/');
        Ok(PgConnection {
            host: parsed.host_str().unwrap_or("localhost").to_owned(),
            port: parsed.port().unwrap_or(5432),
            user: if parsed.username().is_empty() {
                "postgres".into()
            } else {
                decode(parsed.username())
            },
            password: parsed.password().map(decode),
            dbname: if dbname.is_empty() {
                "postgres".into()
            } else {
                decode(dbname)
            },
        })
    }

    /// Uses `password` (e.g. read from an environment variable named in the configuration).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The user dr connects as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The same user, password and database on another server (a scratch or recovered one).
    pub fn on(&self, host: &str, port: u16) -> Self {
        PgConnection {
            host: host.to_owned(),
            port,
            ..self.clone()
        }
    }

    /// The same server, another database.
    pub fn with_database(&self, dbname: &str) -> Self {
        PgConnection {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.dbname
    }

    /// A libpq-style command (`pg_dump`, `pg_restore`...) with the connection in its
    /// environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.dbname)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .kill_on_drop(true);
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        command
    }

    /// Connects with tokio-postgres (no TLS: loopback and private networks; TLS comes later).
    ///
    /// # Errors
    /// [`Error::Backend`] saying whether the server is unreachable (retryable) or refused the
    /// login.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(Duration::from_secs(10))
            .application_name("dr");
        if let Some(password) = &self.password {
            config.password(password);
        }
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| self.explain("connecting", &e).caused_by(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    /// Turns a tokio-postgres error into an [`Error::Backend`] that says what to do, retryable
    /// when the server was unreachable, is starting or shutting down, or the transaction lost
    /// a conflict (SQLSTATE classes 08, 53, 57P, 40).
    pub fn explain(&self, doing: &str, e: &tokio_postgres::Error) -> Error {
        let detail = match e.as_db_error() {
            Some(db) if db.code().code() == "28P01" => {
                format!(
                    "wrong password for user {} (check the source URL)",
                    self.user
                )
            }
            Some(db) if db.code().code() == "3D000" => {
                format!("database {} does not exist", self.dbname)
            }
            Some(db) if db.code().code() == "42501" => {
                format!("insufficient privileges: {}", db.message())
            }
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None if e.to_string().contains("connect")
                || e.to_string().contains("error connecting") =>
            {
                format!(
                    "cannot reach PostgreSQL at {}:{}: {e}; is the server running and the address right?",
                    self.host, self.port
                )
            }
            None => e.to_string(),
        };
        Error::backend("postgres", format!("{doing} {self}"), detail).retryable_if(transient(e))
    }
}

/// Whether trying again may help: no answer, a dropped connection, a server starting up or
/// shutting down, too many clients, a serialization failure or deadlock.
fn transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code.starts_with("40")
        }
        None => !e.to_string().contains("password"),
    }
}

impl std::fmt::Display for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgConnection({self})")
    }
}

/// Quotes an identifier for SQL (`"name"`, doubling inner quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::PgConnection;

    #[test]
    fn password_is_never_shown() {
        let c = PgConnection::from_url("postgres://app:s3cr%40t@127.0.0.1:5433/shop").unwrap();
        assert_eq!(c.to_string(), "postgres://app@127.0.0.1:5433/shop");
        assert!(!format!("{c:?}").contains("s3cr"));
        assert_eq!(c.password.as_deref(), Some("s3cr@t"));
        let err = PgConnection::from_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
