//! TLS for `rediss://` servers: one rustls client configuration (roots from `tls_ca_file` or the
//! system store, an optional client certificate, or no verification at all with
//! `tls_insecure`), used alike by the command connection (handed to the `redis` crate) and by
//! the replication stream.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a `rediss://` server is trusted and how dr proves who it is. The default trusts the
/// system's CA store and sends no client certificate.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RedisTls {
    /// PEM file of the CA(s) that signed the server's certificate (instead of the system's
    /// CA store): for private CAs and self-signed servers.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain), for servers that require one
    /// (`tls-auth-clients yes`); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// INSECURE: accept any server certificate (no chain, name or expiry check): anyone
    /// between dr and the server can read and change the data. Only for testing against a
    /// self-signed server you cannot get the CA of.
    pub insecure: bool,
}

impl RedisTls {
    /// Trusts the CA(s) in `path` (PEM) instead of the system's store.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sends this client certificate (PEM chain) and key (PEM).
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// Turns certificate verification off (INSECURE, see [`RedisTls::insecure`]).
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Whether anything differs from the default (system roots, no client certificate).
    pub fn is_set(&self) -> bool {
        *self != RedisTls::default()
    }

    /// Refuses settings that contradict each other, naming the options.
    ///
    /// # Errors
    /// [`Error::Usage`] for a certificate without its key (or the reverse), and for
    /// `tls_insecure` together with `tls_ca_file`.
    pub fn check(&self) -> Result<()> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(usage("tls_cert_file is set without tls_key_file")),
            (None, Some(_)) => return Err(usage("tls_key_file is set without tls_cert_file")),
            _ => {}
        }
        if self.insecure && self.ca_file.is_some() {
            return Err(usage(
                "tls_insecure = true turns certificate verification off, so tls_ca_file would not be used: set one of them",
            ));
        }
        Ok(())
    }

    /// The rustls configuration: roots, client certificate, verifier.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>> {
        self.check()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal("setting up TLS", e))?;
        let builder = if self.insecure {
            tracing::warn!(
                "tls_insecure = true: the Redis server's certificate is NOT verified; anyone on the path can read and change the data"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification::new(&provider)))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs(cert, "tls_cert_file")?, read_key(key)?)
                .map_err(|e| {
                    usage(&format!(
                        "tls_cert_file {} and tls_key_file {} do not go together: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        let Some(ca) = &self.ca_file else {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(usage(
                    "no CA certificates were found in the system's store: set tls_ca_file to the CA that signed the server's certificate",
                ));
            }
            return Ok(roots);
        };
        for cert in read_certs(ca, "tls_ca_file")? {
            roots.add(cert).map_err(|e| {
                usage(&format!(
                    "tls_ca_file {} holds a certificate that cannot be a CA: {e}",
                    ca.display()
                ))
            })?;
        }
        Ok(roots)
    }

    /// Why the handshake (or the first read after it) failed, in words naming the option to
    /// change; `None` when `error` (an I/O error's text) is not about certificates.
    pub(crate) fn explain(&self, error: &str) -> Option<String> {
        if error.contains("invalid peer certificate") {
            return Some(match &self.ca_file {
                Some(ca) => format!(
                    "the server's certificate was not accepted ({error}): it is not signed by the CA in tls_ca_file {} or does not name this host; check tls_ca_file (tls_insecure = true skips the check, insecurely)",
                    ca.display()
                ),
                None => format!(
                    "the server's certificate was not accepted ({error}): no CA in the system's store signed it, or it does not name this host; set tls_ca_file to the CA that signed it (tls_insecure = true skips the check, insecurely)"
                ),
            });
        }
        if !error.contains("received fatal alert") {
            return None;
        }
        Some(match self.cert_file {
            None => format!(
                "the server ended the TLS session ({error}): it probably requires a client certificate: set tls_cert_file and tls_key_file"
            ),
            Some(_) => format!(
                "the server ended the TLS session ({error}): it did not accept the client certificate in tls_cert_file (is it signed by a CA the server trusts?)"
            ),
        })
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// The name the server's certificate must carry: the URL's host (a DNS name or an IP).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|e| {
        usage(&format!(
            "{host} cannot be checked against a certificate: {e}"
        ))
    })
}

fn usage(message: &str) -> Error {
    Error::Usage(format!("Redis TLS: {message}"))
}

fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            usage(&format!(
                "{option} {}: cannot read PEM certificates ({e})",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(usage(&format!(
            "{option} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        usage(&format!(
            "tls_key_file {}: cannot read a PEM private key ({e})",
            path.display()
        ))
    })
}

/// `tls_insecure`: every certificate is accepted; handshake signatures are still checked
/// (they prove nothing without a trusted certificate, but keep the handshake well-formed).
#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoVerification {
    fn new(provider: &CryptoProvider) -> Self {
        NoVerification {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradicting_settings_are_refused_naming_the_options() {
        let half = RedisTls {
            cert_file: Some("c.pem".into()),
            ..RedisTls::default()
        };
        assert!(
            half.check()
                .unwrap_err()
                .to_string()
                .contains("tls_key_file")
        );
        let both = RedisTls::default()
            .with_ca_file("ca.pem")
            .with_insecure(true);
        let err = both.check().unwrap_err().to_string();
        assert!(
            err.contains("tls_insecure") && err.contains("tls_ca_file"),
            "{err}"
        );
        assert!(RedisTls::default().check().is_ok());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let tls = RedisTls::default().with_ca_file("/nonexistent/ca.pem");
        let err = tls.client_config().unwrap_err().to_string();
        assert!(
            err.contains("tls_ca_file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn ip_and_dns_hosts_are_server_names() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
    }
}
