//! Redis in the kind registry: the `kind = "redis"` source type ([`RedisSourceFactory`]
//! building a [`RedisConfigured`] from [`RedisSettings`]) and the `redis.rdb` and
//! `redis.logical` manifest kinds ([`RedisKind`]).
//!
//! A restore of a configured source is a file restore when it names a file (the request's
//! target, or the source's `rdb_path`) and no server: [`RedisFileTarget`] with the source's
//! stop and start commands, refused while the server at the source's URL runs and saves to
//! the file. Otherwise the keys are replayed with RESTORE into the request's server or the
//! source's own ([`RedisReplayTarget`]); over existing keys (with `force`) a safety backup of
//! that server is taken into the repository first, under the source's name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::{
    Backup, Error, KindSupport, Repository, Restore, RestoreOptions, RestoreRank, RestoreReport,
    RestoreRequest, Result, Source, SourceFactory, SourceSettings, Verify, async_trait,
};
use serde::{Deserialize, Serialize};

use crate::{
    LOGICAL_KIND, RDB_KIND, RedisConnection, RedisFileTarget, RedisMode, RedisReplayTarget,
    RedisSource, RedisTls, RedisVerifier,
};

/// The source type.
pub const SOURCE_TYPE: &str = "redis";

/// The settings of a `kind = "redis"` source (the `[sources.NAME]` table of dr.toml).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port`, or `rediss://` for TLS (`password_env` is better
    /// than a password here).
    pub url: String,
    /// Name of an environment variable holding the password (read when the source is built).
    #[serde(default)]
    pub password_env: Option<String>,
    /// `rdb` (the server's snapshot over the replication protocol, default) or `logical`
    /// (SCAN + DUMP, for managed servers that refuse SYNC).
    #[serde(default)]
    pub mode: RedisMode,
    /// Restore RDB backups as this file (the server's `dump.rdb`); without it, restores
    /// replay the keys into the server at `url` with RESTORE.
    #[serde(default)]
    pub rdb_path: Option<PathBuf>,
    /// Run before the restored file is swapped in (e.g. `systemctl stop redis-server`).
    #[serde(default)]
    pub stop_command: Option<String>,
    /// Run after it (e.g. `systemctl start redis-server`).
    #[serde(default)]
    pub start_command: Option<String>,
    /// `rediss://` only: PEM file of the CA that signed the server's certificate (default:
    /// the system's CA store). Also used for `--server rediss://...` restores.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// `rediss://` only: PEM client certificate, for servers with `tls-auth-clients yes`
    /// (with `tls_key_file`).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// `rediss://` only: PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// `rediss://` only, INSECURE: do not verify the server's certificate at all (anyone on
    /// the path can read and change the data; a warning is logged). For self-signed test
    /// servers; prefer `tls_ca_file`.
    #[serde(default)]
    pub tls_insecure: bool,
}

impl RedisSettings {
    /// The settings of the server at `url`, every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            password_env: None,
            mode: RedisMode::Rdb,
            rdb_path: None,
            stop_command: None,
            start_command: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_insecure: false,
        }
    }

    /// The TLS settings of `rediss://` connections.
    pub fn tls(&self) -> RedisTls {
        RedisTls {
            ca_file: self.tls_ca_file.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
            insecure: self.tls_insecure,
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &dr_core::redact_url(&self.url))
            .field("password_env", &self.password_env)
            .field("mode", &self.mode)
            .field("rdb_path", &self.rdb_path)
            .field("stop_command", &self.stop_command)
            .field("start_command", &self.start_command)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_insecure", &self.tls_insecure)
            .finish()
    }
}

/// Builds `kind = "redis"` sources.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisSourceFactory;

impl SourceFactory for RedisSourceFactory {
    fn source_type(&self) -> &str {
        SOURCE_TYPE
    }

    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(RedisConfigured::new(
            settings.parse(SOURCE_TYPE)?,
        )?))
    }
}

/// One configured Redis source.
#[derive(Debug, Clone)]
pub struct RedisConfigured {
    settings: RedisSettings,
    /// The source's server, with the password of `password_env` when it is set.
    conn: RedisConnection,
    /// The variable named by `password_env` when it was not set: what needs the password
    /// (backups, replays into the source's server) is refused naming it.
    missing_password: Option<String>,
}

impl RedisConfigured {
    /// The source with these settings; the password of `password_env` is read now.
    ///
    /// # Errors
    /// [`Error::Usage`] for a URL that is not `redis[s]://host:port`, and for TLS settings
    /// with a `redis://` URL or contradicting each other.
    pub fn new(settings: RedisSettings) -> Result<Self> {
        let conn = RedisConnection::from_url(&settings.url)
            .map_err(|e| Error::Usage(format!("url of a redis source: {e}")))?;
        let tls = settings.tls();
        if tls.is_set() && !conn.is_tls() {
            return Err(Error::Usage(format!(
                "tls_ca_file, tls_cert_file, tls_key_file and tls_insecure are for TLS, but the url of this redis source is {conn}: use rediss://"
            )));
        }
        tls.check()?;
        let conn = conn.with_tls(tls);
        let (conn, missing_password) = match &settings.password_env {
            None => (conn, None),
            Some(var) => match std::env::var(var) {
                Ok(password) => (conn.with_password(password), None),
                Err(_) => (conn, Some(var.clone())),
            },
        };
        Ok(RedisConfigured {
            settings,
            conn,
            missing_password,
        })
    }

    /// Its settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// The source's server with its password, or a usage error naming the unset variable.
    ///
    /// # Errors
    /// [`Error::Usage`] when `password_env` names a variable that was not set.
    pub fn connection(&self) -> Result<RedisConnection> {
        match &self.missing_password {
            Some(var) => Err(Error::Usage(format!(
                "the environment variable {var} (password_env) is not set"
            ))),
            None => Ok(self.conn.clone()),
        }
    }

    /// The file restore to `path`, or `None` when the request replays keys into a server.
    fn file_target(&self, options: &RestoreOptions) -> Option<RedisFileTarget> {
        if options.server.is_some() {
            return None;
        }
        let path = options
            .target
            .clone()
            .or_else(|| self.settings.rdb_path.clone())?;
        // A server that refuses the login (no password set) still counts as running.
        Some(
            RedisFileTarget::new(path)
                .with_commands(
                    self.settings.stop_command.clone(),
                    self.settings.start_command.clone(),
                )
                .with_server(Some(self.conn.clone())),
        )
    }

    /// The RESTORE replay into `options.server` or the source's own server.
    fn replay_target(&self, options: &RestoreOptions) -> Result<RedisReplayTarget> {
        match &options.server {
            Some(url) => RedisConnection::from_url(url)
                .map(|conn| RedisReplayTarget::new(conn.with_tls(self.settings.tls())))
                .map_err(|e| Error::Usage(format!("--server: {e}"))),
            None => self.connection().map(RedisReplayTarget::new),
        }
    }
}

#[async_trait]
impl Source for RedisConfigured {
    fn kind(&self) -> &str {
        match self.settings.mode {
            RedisMode::Rdb => RDB_KIND,
            RedisMode::Logical => LOGICAL_KIND,
        }
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Cache
    }

    async fn backup(&self, _: &Repository, _: &str, _full: bool) -> Result<Box<dyn Backup>> {
        Ok(Box::new(
            RedisSource::new(self.connection()?).with_mode(self.settings.mode),
        ))
    }

    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        let options = request.options;
        refuse_unsupported(options)?;
        if let Some(file) = self.file_target(options) {
            let backup = request.open().await?;
            return file.restore(&backup, options).await;
        }
        let replay = self
            .replay_target(options)?
            .with_safety_backup(request.repo.clone(), request.source_name);
        let backup = request.open().await?;
        replay.restore(&backup, options).await
    }

    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(RedisVerifier::new()))
    }

    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        RedisKind::new(self.kind()).scratch_restorer(repo, scratch)
    }

    fn explain(&self, error: Error) -> Error {
        explain_auth(error, self.settings.password_env.as_deref())
    }
}

/// The `redis.rdb` or `redis.logical` manifest kind, without a configured source.
#[derive(Debug, Clone, Copy)]
pub struct RedisKind {
    kind: &'static str,
}

impl RedisKind {
    /// `redis.rdb` ([`RDB_KIND`]) or, for any other name, `redis.logical`.
    pub fn new(kind: &str) -> Self {
        RedisKind {
            kind: if kind == RDB_KIND {
                RDB_KIND
            } else {
                LOGICAL_KIND
            },
        }
    }
}

impl KindSupport for RedisKind {
    fn kind(&self) -> &str {
        self.kind
    }

    fn verifier(&self, _: &Repository) -> Option<Box<dyn Verify>> {
        Some(Box::new(RedisVerifier::new()))
    }

    /// RDB backups restore into `<scratch>/dump.rdb` (checked while written); logical ones
    /// only into a running server (verify at restore level starts a scratch server).
    fn scratch_restorer(&self, _: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        (self.kind == RDB_KIND)
            .then(|| Box::new(RedisFileTarget::new(scratch_path(scratch))) as Box<dyn Restore>)
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Cache
    }
}

/// Where a scratch restore of an RDB backup puts the file: `<scratch>/dump.rdb`.
pub fn scratch_path(scratch: &Path) -> PathBuf {
    scratch.join("dump.rdb")
}

/// What servers answer to a wrong password (Redis AUTH, ACL users).
const AUTH_FAILURES: [&str; 4] = [
    "WRONGPASS",
    "invalid username-password pair",
    "NOAUTH",
    "invalid password",
];

/// An authentication failure with where the password came from (the variable's name, never
/// its value); other errors unchanged.
pub fn explain_auth(error: Error, password_env: Option<&str>) -> Error {
    if !AUTH_FAILURES.iter().any(|p| error.to_string().contains(p)) {
        return error;
    }
    let hint = match password_env {
        Some(var) => format!(
            " (the password comes from the environment variable {var}, named by password_env: check its value)"
        ),
        None => {
            " (the password comes from the source's url: check it, or set password_env)".to_owned()
        }
    };
    error.with_hint(&hint)
}

/// Refuses the restore options Redis has no use for, saying what it does instead.
fn refuse_unsupported(options: &RestoreOptions) -> Result<()> {
    let refused: &[(bool, &str)] = &[
        (
            options.in_place,
            "--in-place is for PostgreSQL: a Redis replay with --force takes a safety backup of the server first anyway",
        ),
        (
            options.swap,
            "--swap is for PostgreSQL: a Redis file restore always keeps the previous file as <name>.pre-restore-<time>",
        ),
        (
            options.server.is_some() && options.target.is_some(),
            "--server replays keys into a running server and --to writes an RDB file: pass one of them",
        ),
        (
            !options.only.is_empty(),
            "--only is for directory and bucket sources: a Redis backup is restored whole",
        ),
        (
            options.globals || options.with_role_passwords,
            "--globals and --with-role-passwords are for PostgreSQL roles",
        ),
        (
            options.recovery_target.is_some(),
            "a recovery target is for physical PostgreSQL: Redis restores are whole backups; pick one by id or --at TIME",
        ),
        dr_core::registry::pitr_only(options),
    ];
    dr_core::registry::refuse_unsupported(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_name_the_variable_never_the_password() {
        let e = explain_auth(
            Error::backend("redis", "login", "WRONGPASS invalid username-password pair"),
            Some("REDIS_PW"),
        );
        assert!(e.to_string().contains("REDIS_PW"), "{e}");
        let other = explain_auth(
            Error::backend("redis", "connect", "connection refused"),
            Some("REDIS_PW"),
        );
        assert!(!other.to_string().contains("REDIS_PW"));
    }

    #[test]
    fn debug_hides_the_url_password() {
        let settings = RedisSettings::new("redis://:hunter2@127.0.0.1:6379");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let configured = RedisConfigured::new(settings).unwrap();
        assert!(!format!("{configured:?}").contains("hunter2"));
    }
}
