//! The certificate and key files of a connection: named in the URL, else libpq's defaults in
//! `~/.postgresql/` when they exist; read and checked as libpq checks them.

use std::path::{Path, PathBuf};

use dr_core::{Error, Result};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsSettings;

/// The root certificates to verify the server with.
pub(crate) struct Roots {
    /// The certificates.
    pub store: RootCertStore,
}

/// A client certificate chain and its key.
pub(crate) struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The files a TLS connection uses, loaded.
pub(crate) struct TlsFiles {
    pub roots: Option<Roots>,
    pub client: Option<ClientCert>,
}

/// Loads the files `settings` name, or libpq's defaults that exist (blocking: call it on a
/// blocking thread).
///
/// # Errors
/// [`Error::Usage`] naming the URL parameter when a file is missing, unreadable, holds no
/// certificate or key, or the key is readable by others; or when `verify-ca`/`verify-full`
/// has no root certificate at all.
pub(crate) fn load(settings: &TlsSettings) -> Result<TlsFiles> {
    let root_path = chosen(&settings.root_cert, "root.crt");
    let roots = match root_path {
        Some(path) => Some(read_roots(&path)?),
        None if settings.mode.verifies() => return Err(no_root(settings)),
        None => None,
    };
    if settings.cert.is_none() {
        default_cert_readable()?;
    }
    let client = match (
        chosen(&settings.cert, "postgresql.crt"),
        settings.key.clone(),
    ) {
        (Some(cert), key) => Some(read_client(&cert, key)?),
        (None, Some(_)) => {
            return Err(Error::Usage(
                "sslkey is set in the source URL but sslcert is not: name the client certificate too".into(),
            ));
        }
        (None, None) => None,
    };
    Ok(TlsFiles { roots, client })
}

/// The file the URL names, else `~/.postgresql/DEFAULT` when it exists.
fn chosen(named: &Option<PathBuf>, default: &str) -> Option<PathBuf> {
    if named.is_some() {
        return named.clone();
    }
    let path = default_path(default)?;
    path.is_file().then_some(path)
}

fn default_path(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".postgresql").join(name))
}

/// libpq fails when its default client certificate exists but cannot be looked at (say, a
/// HOME of another user); dr says so before its children stumble on it.
fn default_cert_readable() -> Result<()> {
    let Some(path) = default_path("postgresql.crt") else {
        return Ok(());
    };
    match std::fs::metadata(&path) {
        // Only a TLS handshake makes libpq look at it: warn, and let a server without TLS
        // (sslmode=prefer) go on working.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                "libpq's default client certificate {} cannot be read ({e}): the PostgreSQL tools fail on it if the server speaks TLS; set HOME to this user's home, or sslcert and sslkey in the source URL",
                path.display()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

fn no_root(settings: &TlsSettings) -> Error {
    Error::Usage(format!(
        "sslmode={} verifies the server's certificate but no root certificate is given: set sslrootcert=/path/to/ca.pem in the source URL (or put the CA in ~/.postgresql/root.crt), or use sslmode=require to encrypt without verifying",
        settings.mode
    ))
}

fn unreadable(parameter: &str, path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Usage(format!(
        "{parameter} {} cannot be used: {detail}; check {parameter} in the source URL",
        path.display()
    ))
}

fn read_roots(path: &Path) -> Result<Roots> {
    let mut store = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| unreadable("sslrootcert", path, e))?;
    for cert in certs {
        let cert = cert.map_err(|e| unreadable("sslrootcert", path, e))?;
        store
            .add(cert)
            .map_err(|e| unreadable("sslrootcert", path, e))?;
    }
    if store.is_empty() {
        return Err(unreadable(
            "sslrootcert",
            path,
            "it holds no PEM certificate",
        ));
    }
    Ok(Roots { store })
}

fn read_client(cert: &Path, key: Option<PathBuf>) -> Result<ClientCert> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| unreadable("sslcert", cert, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable("sslcert", cert, e))?;
    if chain.is_empty() {
        return Err(unreadable("sslcert", cert, "it holds no PEM certificate"));
    }
    let key_path = key
        .or_else(|| chosen(&None, "postgresql.key"))
        .ok_or_else(|| {
            unreadable(
                "sslcert",
                cert,
                "there is no key for it: set sslkey in the source URL",
            )
        })?;
    check_key_mode(&key_path)?;
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| unreadable("sslkey", &key_path, e))?;
    Ok(ClientCert { chain, key })
}

/// libpq refuses a key others can read (0600 or less when it is the user's own, 0640 or less
/// when root owns it); so does dr, so that dr and its children agree.
fn check_key_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| unreadable("sslkey", path, e))?;
    if !meta.is_file() {
        return Err(unreadable("sslkey", path, "it is not a regular file"));
    }
    let mode = meta.mode();
    let too_open = if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(unreadable(
            "sslkey",
            path,
            format!(
                "it has group or world access (mode {:o}): chmod 0600 it (0640 when root owns it), as libpq requires",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}
