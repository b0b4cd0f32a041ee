//! Connections from a URL; the password and the TLS settings only ever travel in the
//! child's environment.

use std::net::IpAddr;
use std::time::Duration;

use dr_core::{Error, Result};
use tokio::process::Command;

use crate::tls::{SslMode, TlsSettings, explain};

/// Where a PostgreSQL database is: `postgres://user:password@host:port/dbname`, with libpq's
/// TLS parameters in the query (`?sslmode=verify-full&sslrootcert=/etc/ca.pem`, see
/// [`TlsSettings`]). Debug and Display never show the password.
#[derive(Clone)]
pub struct PgConnection {
    host: String,
    /// Where to connect when it is not `host` (libpq's `hostaddr`); TLS still verifies `host`.
    hostaddr: Option<IpAddr>,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: String,
    tls: TlsSettings,
}

impl PgConnection {
    /// Parses a `postgres://` or `postgresql://` URL, with `sslmode`, `sslrootcert`,
    /// `sslcert` and `sslkey` as query parameters (libpq's names and meanings; `sslmode`
    /// defaults to `prefer`).
    ///
    /// # Errors
    /// [`Error::InvalidLocation`] for anything else, with the password redacted;
    /// [`Error::Usage`] for an unknown query parameter or `sslmode`.
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
        let tls = TlsSettings::from_query(parsed.query_pairs(), &dr_core::redact_url(url))?;
        Ok(PgConnection {
            host: parsed
                .host_str()
                .unwrap_or("localhost")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            hostaddr: None,
            tls,
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

    /// The same user, password, database and TLS settings on a copy of this server elsewhere
    /// (a scratch or recovered cluster). A copy serves the same certificate, so when `host` is
    /// an IP address dr connects there while TLS still checks the certificate against this
    /// connection's host name (libpq's `hostaddr`).
    pub fn on(&self, host: &str, port: u16) -> Self {
        match host.parse::<IpAddr>() {
            Ok(addr) => PgConnection {
                hostaddr: Some(addr),
                port,
                ..self.clone()
            },
            Err(_) => PgConnection {
                host: host.to_owned(),
                hostaddr: None,
                port,
                ..self.clone()
            },
        }
    }

    /// The TLS settings of the URL.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
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
    /// environment (`PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// and the TLS settings as `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`), none of
    /// it on the command line.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.dbname)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGHOSTADDR")
            .kill_on_drop(true);
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        if let Some(addr) = self.hostaddr {
            command.env("PGHOSTADDR", addr.to_string());
        }
        for (name, value) in self.tls.child_env() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }

    /// Connects with tokio-postgres, over TLS as `sslmode` says (libpq's meanings: `allow`
    /// tries plaintext first and TLS when the server refuses it, `prefer` the other way round,
    /// `require` and the `verify-*` modes TLS only).
    ///
    /// # Errors
    /// [`Error::Usage`] for TLS files that cannot be used; [`Error::Backend`] saying whether
    /// the server is unreachable (retryable), refused the login, or failed TLS (certificate
    /// not trusted, name mismatch, TLS required or refused: naming `sslmode`/`sslrootcert`).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let config = self.config();
        let result = match self.tls.mode {
            SslMode::Disable => plain(&config).await,
            SslMode::Allow => match plain(&config).await {
                Err(e) if e.as_db_error().is_some() => {
                    let tls = self.connector().await?;
                    secure(&config, tls, tokio_postgres::config::SslMode::Require)
                        .await
                        .map_err(|second| if explain::needs_tls(&e) { second } else { e })
                }
                other => other,
            },
            SslMode::Prefer => {
                let tls = self.connector().await?;
                match secure(&config, tls, tokio_postgres::config::SslMode::Prefer).await {
                    Err(e) if retry_plain(&e) => plain(&config).await.map_err(|second| {
                        if explain::needs_tls(&second) {
                            e
                        } else {
                            second
                        }
                    }),
                    other => other,
                }
            }
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                let tls = self.connector().await?;
                secure(&config, tls, tokio_postgres::config::SslMode::Require).await
            }
        };
        result.map_err(|e| self.explain("connecting", &e).caused_by(e))
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(Duration::from_secs(10))
            .application_name("dr");
        if let Some(addr) = self.hostaddr {
            config.hostaddr(addr);
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }

    async fn connector(&self) -> Result<crate::tls::connector::RustlsConnector> {
        crate::tls::connector::RustlsConnector::new(&self.tls).await
    }

    /// Turns a tokio-postgres error into an [`Error::Backend`] that says what to do, retryable
    /// when the server was unreachable, is starting or shutting down, or the transaction lost
    /// a conflict (SQLSTATE classes 08, 53, 57P, 40).
    pub fn explain(&self, doing: &str, e: &tokio_postgres::Error) -> Error {
        if let Some(detail) = explain::describe(e, &self.tls, &self.host) {
            return Error::backend("postgres", format!("{doing} {self}"), detail);
        }
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
                    self.hostaddr
                        .map_or_else(|| self.host.clone(), |a| a.to_string()),
                    self.port
                )
            }
            None => e.to_string(),
        };
        Error::backend("postgres", format!("{doing} {self}"), detail).retryable_if(transient(e))
    }
}

/// A plaintext connection (`sslmode=disable`, or the plaintext half of `allow`/`prefer`).
async fn plain(
    config: &tokio_postgres::Config,
) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    tracing::debug!(tls = false, "connected to PostgreSQL");
    Ok(client)
}

/// A TLS connection (`Prefer`: plaintext when the server answers that it has no TLS).
async fn secure(
    config: &tokio_postgres::Config,
    tls: crate::tls::connector::RustlsConnector,
    mode: tokio_postgres::config::SslMode,
) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(mode);
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    tracing::debug!(?mode, "connected to PostgreSQL");
    Ok(client)
}

/// Whether `prefer` tries plaintext after a failed TLS attempt: as libpq, after a failed
/// handshake or a refusal by the server, not when the server was unreachable.
fn retry_plain(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some() || explain::handshake_failure(e).is_some()
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
        None if explain::handshake_failure(e).is_some() || explain::no_tls_at_server(e) => false,
        None => !e.to_string().contains("password"),
    }
}

impl std::fmt::Display for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An IPv6 address is bracketed again, as in the URL it came from.
        let (open, close) = if self.host.contains(':') {
            ("[", "]")
        } else {
            ("", "")
        };
        write!(
            f,
            "postgres://{}@{open}{}{close}:{}/{}",
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
        let c = PgConnection::from_url(
            "postgres://app:s3cr%40t@127.0.0.1:5433/shop?sslmode=require&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(c.to_string(), "postgres://app@127.0.0.1:5433/shop");
        let v6 = PgConnection::from_url("postgres://app@[::1]:5433/shop").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.to_string().as_str()),
            ("::1", "postgres://app@[::1]:5433/shop")
        );
        assert!(!format!("{c:?}").contains("s3cr"));
        assert_eq!(c.password.as_deref(), Some("s3cr@t"));
        let err = PgConnection::from_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = PgConnection::from_url("postgres://u:hunter2@h/db?sslmod=require").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("sslmod"), "{err}");
    }

    #[test]
    fn children_get_tls_only_through_their_environment() {
        let c = PgConnection::from_url(
            "postgres://app:pw@db.example.com/shop?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap()
        .on("127.0.0.1", 6000);
        let command = c.command("pg_dump");
        let env: Vec<_> = command.as_std().get_envs().collect();
        let get = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| *v)
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/ca.pem"));
        assert_eq!(get("PGHOST").as_deref(), Some("db.example.com"));
        assert_eq!(get("PGHOSTADDR").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("PGSSLKEY"), None);
        assert_eq!(command.as_std().get_args().count(), 0);
    }
}
