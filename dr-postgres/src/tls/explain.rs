//! What a failed TLS connection means, in words that name the URL parameter to change.

use std::io;

use rustls::{AlertDescription, CertificateError};

use super::{SslMode, TlsSettings};

/// Why a TLS handshake failed, sorted by what the user has to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server's certificate does not chain to the root certificate.
    Untrusted,
    /// The certificate chains, but is not for the host name connected to.
    NameMismatch,
    /// The certificate is expired or not valid yet.
    OutOfDate,
    /// The server refused the client certificate (or wanted one).
    ClientCertRefused,
    /// Anything else (a protocol error, a dropped connection).
    Other,
}

/// A failed handshake: the classified reason and rustls's own words.
#[derive(Debug)]
pub(crate) struct HandshakeError {
    pub failure: Failure,
    source: io::Error,
}

impl HandshakeError {
    /// Classifies the error tokio-rustls returns (a rustls error inside an I/O error).
    pub(crate) fn from_io(source: io::Error) -> Self {
        let failure = source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map_or(Failure::Other, classify);
        HandshakeError { failure, source }
    }
}

fn classify(error: &rustls::Error) -> Failure {
    use CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => Failure::NameMismatch,
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => Failure::OutOfDate,
        rustls::Error::InvalidCertificate(_) => Failure::Untrusted,
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied,
        ) => Failure::ClientCertRefused,
        _ => Failure::Other,
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS handshake failed: {}", self.source)
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The handshake failure inside a tokio-postgres error, if that is what it is.
pub(crate) fn handshake_failure(e: &tokio_postgres::Error) -> Option<&HandshakeError> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<HandshakeError>() {
            return Some(found);
        }
        cause = c.source();
    }
    None
}

/// Whether `e` says the server will not take plaintext from this client (pg_hba.conf has only
/// `hostssl` lines for it).
pub(crate) fn needs_tls(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == "28000" && db.message().contains("no encryption"))
}

/// Whether `e` is the server answering "no TLS here" to a TLS request.
pub(crate) fn no_tls_at_server(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none()
        && std::error::Error::source(e)
            .is_some_and(|c| c.to_string().contains("server does not support TLS"))
}

/// The words for a TLS-related failure of `e`, or `None` when it is something else.
pub(crate) fn describe(e: &tokio_postgres::Error, tls: &TlsSettings, host: &str) -> Option<String> {
    if let Some(handshake) = handshake_failure(e) {
        return Some(handshake_words(handshake, tls, host));
    }
    if no_tls_at_server(e) {
        return Some(format!(
            "the server does not accept TLS (its ssl setting is off) but sslmode={} requires it: turn ssl on at the server, or set sslmode=prefer in the source URL",
            tls.mode
        ));
    }
    if needs_tls(e) {
        return Some(
            "the server requires TLS (pg_hba.conf has only hostssl lines for this user and database): set sslmode=require or verify-full in the source URL".into(),
        );
    }
    let db = e.as_db_error()?;
    if db.code().code() == "28000" && db.message().contains("SSL encryption") {
        return Some(format!(
            "the server refuses TLS for this user and database (pg_hba.conf hostnossl): set sslmode=prefer, allow or disable in the source URL ({})",
            db.message()
        ));
    }
    if db.message().contains("client certificate") {
        return Some(format!(
            "{}: set sslcert and sslkey in the source URL to a certificate the server's CA signed",
            db.message()
        ));
    }
    None
}

fn handshake_words(handshake: &HandshakeError, tls: &TlsSettings, host: &str) -> String {
    let roots = tls.root_cert.as_ref().map_or_else(
        || "~/.postgresql/root.crt".to_owned(),
        |p| p.display().to_string(),
    );
    match handshake.failure {
        Failure::Untrusted => format!(
            "certificate not trusted: the server's certificate is not signed by the CA in sslrootcert ({roots}), {}; check sslrootcert in the source URL (or, to encrypt without verifying, set sslmode=require and leave sslrootcert out)",
            handshake.source
        ),
        Failure::NameMismatch => format!(
            "name mismatch: the server's certificate is not for the host {host} ({}); connect by a name the certificate lists, or set sslmode=verify-ca to check the CA only",
            handshake.source
        ),
        Failure::OutOfDate => format!(
            "the server's certificate is expired or not yet valid ({}); renew it at the server",
            handshake.source
        ),
        Failure::ClientCertRefused => format!(
            "the server refused the client certificate ({}); check sslcert and sslkey in the source URL",
            handshake.source
        ),
        Failure::Other if tls.mode == SslMode::Disable => handshake.to_string(),
        Failure::Other => format!(
            "{handshake} (sslmode={}); check the server's TLS settings",
            tls.mode
        ),
    }
}

/// What to add to a libpq child's failure whose stderr shows a TLS problem (libpq's own
/// words, PostgreSQL 15); empty otherwise.
pub(crate) fn child_hint(stderr: &str) -> &'static str {
    if stderr.contains("certificate verify failed") {
        " (certificate not trusted: check sslrootcert in the source URL, or set sslmode=require to encrypt without verifying)"
    } else if stderr.contains("does not match host name") {
        " (name mismatch: the server's certificate is not for this host; connect by a name it lists, or set sslmode=verify-ca)"
    } else if stderr.contains("no encryption") {
        " (the server requires TLS: set sslmode=require or verify-full in the source URL)"
    } else if stderr.contains("server does not support SSL") {
        " (the server has TLS off: set sslmode=prefer in the source URL, or turn ssl on at the server)"
    } else {
        ""
    }
}
