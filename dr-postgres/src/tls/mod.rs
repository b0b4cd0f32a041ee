//! TLS to PostgreSQL with libpq's names and meanings.
//!
//! The source URL carries `sslmode`, `sslrootcert`, `sslcert` and `sslkey` as query
//! parameters (`postgres://app@db:5432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem`).
//! dr's own connections go through rustls ([`connector`]); the children (pg_dump, pg_restore,
//! pg_basebackup...) get the same settings as `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and
//! `PGSSLKEY` in their environment, never on their command line.
//!
//! As libpq: the default mode is `prefer`; without `sslrootcert`, `~/.postgresql/root.crt` is
//! used when it exists (and then `require` verifies the chain as `verify-ca` does); without
//! `sslcert`/`sslkey`, `~/.postgresql/postgresql.crt` and `postgresql.key` when they exist.
//! Unlike libpq, a file named in the URL that cannot be read is an error rather than skipped.

pub(crate) mod connector;
pub(crate) mod explain;
mod files;
mod verifier;

use std::path::PathBuf;

use dr_core::{Error, Result};

/// libpq's `sslmode`: whether to use TLS and what to verify.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS when the server refuses plaintext.
    Allow,
    /// TLS first; plaintext when the server has no TLS or refuses it (libpq's default).
    #[default]
    Prefer,
    /// TLS only; the certificate chain is verified only when a root certificate is given.
    Require,
    /// TLS only; the chain is verified against `sslrootcert`, the host name is not.
    VerifyCa,
    /// TLS only; the chain and the host name are verified.
    VerifyFull,
}

impl SslMode {
    /// libpq's name of the mode (`verify-full`...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses libpq's name of a mode.
    pub fn parse(text: &str) -> Option<SslMode> {
        [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }

    /// Whether the certificate chain must be verified whatever files exist.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of a connection, as the URL gave them (defaults are looked up when
/// connecting, as libpq does).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: the CA certificates (PEM) the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: the client certificate (PEM), for `cert` authentication.
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM, unencrypted).
    pub key: Option<PathBuf>,
}

/// The URL parameters dr understands, all TLS ones.
const KNOWN: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsSettings {
    /// Reads the TLS parameters of a URL's query; anything else is refused (a parameter
    /// dr would ignore might be one the user counts on, e.g. `sslcrl`).
    ///
    /// # Errors
    /// [`Error::Usage`] for an unknown parameter or an unknown `sslmode`.
    pub fn from_query<'a>(
        pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
        redacted_url: &str,
    ) -> Result<TlsSettings> {
        let mut settings = TlsSettings::default();
        for (name, value) in pairs {
            let path = || Some(PathBuf::from(value.as_ref()));
            match name.as_ref() {
                "sslmode" => settings.mode = parse_mode(&value, redacted_url)?,
                "sslrootcert" if value == "system" => return Err(no_system(redacted_url)),
                "sslrootcert" => settings.root_cert = path(),
                "sslcert" => settings.cert = path(),
                "sslkey" => settings.key = path(),
                other => return Err(unknown(other, redacted_url)),
            }
        }
        Ok(settings)
    }

    /// The environment a libpq child gets: `PGSSLMODE` always, the file variables when the
    /// URL names them (else removed, so that the child, like dr, falls back to
    /// `~/.postgresql/`).
    pub fn child_env(&self) -> Vec<(&'static str, Option<std::ffi::OsString>)> {
        let file = |p: &Option<PathBuf>| p.as_ref().map(|p| p.as_os_str().to_owned());
        vec![
            ("PGSSLMODE", Some(self.mode.as_str().into())),
            ("PGSSLROOTCERT", file(&self.root_cert)),
            ("PGSSLCERT", file(&self.cert)),
            ("PGSSLKEY", file(&self.key)),
        ]
    }
}

fn parse_mode(value: &str, redacted_url: &str) -> Result<SslMode> {
    SslMode::parse(value).ok_or_else(|| {
        Error::Usage(format!(
            "sslmode={value} in the source URL {redacted_url} is not a mode: use disable, allow, prefer (the default), require, verify-ca or verify-full"
        ))
    })
}

fn unknown(name: &str, redacted_url: &str) -> Error {
    Error::Usage(format!(
        "the source URL {redacted_url} has the parameter {name}, which dr does not support: the URL may carry {} (libpq's names)",
        KNOWN.join(", ")
    ))
}

fn no_system(redacted_url: &str) -> Error {
    Error::Usage(format!(
        "sslrootcert=system in the source URL {redacted_url} is not supported (PostgreSQL 15's client tools read it as a file name): name the CA file, e.g. sslrootcert=/etc/ssl/certs/ca-certificates.crt"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<TlsSettings> {
        let url = url::Url::parse(&format!("postgres://h/db?{query}")).unwrap();
        TlsSettings::from_query(url.query_pairs(), "postgres://h/db")
    }

    #[test]
    fn libpq_names_parse_and_others_are_refused() {
        let s = parse("sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/c&sslkey=/k").unwrap();
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(parse("").unwrap().mode, SslMode::Prefer);
        let err = parse("sslmode=verify").unwrap_err().to_string();
        assert!(
            err.contains("sslmode=verify ") && err.contains("verify-full"),
            "{err}"
        );
        let err = parse("sslcrl=/x").unwrap_err().to_string();
        assert!(
            err.contains("sslcrl") && err.contains("sslrootcert"),
            "{err}"
        );
        assert!(parse("sslrootcert=system").is_err());
    }

    #[test]
    fn children_get_the_mode_and_only_the_named_files() {
        let env = parse("sslmode=require&sslrootcert=/ca")
            .unwrap()
            .child_env();
        assert_eq!(env[0], ("PGSSLMODE", Some("require".into())));
        assert_eq!(env[1], ("PGSSLROOTCERT", Some("/ca".into())));
        assert_eq!(env[2], ("PGSSLCERT", None));
    }
}
