//! Extra trusted roots for S3-compatible (and GCS, Azure) stores behind a private CA: the
//! `ca_file` option (a PEM file of one or more CA certificates, trusted besides the system's
//! roots), and the hint that names it when a store's certificate is not trusted.

use std::path::Path;

use dr_core::Error;

/// The option key, beside object_store's own keys in [`crate::open_store`]'s `options`,
/// naming a PEM file of CA certificates the store's TLS certificate may chain to (besides the
/// system's roots). Only for `s3://`, `gs://` and `az://` stores.
pub const CA_FILE_OPTION: &str = "ca_file";

/// The words that say a TLS handshake failed on the server's certificate (rustls and
/// native TLS spellings).
const UNTRUSTED: [&str; 5] = [
    "UnknownIssuer",
    "invalid peer certificate",
    "certificate verify failed",
    "self-signed certificate",
    "self signed certificate",
];

/// `options` without [`CA_FILE_OPTION`], and its value.
pub(crate) fn split_ca_file<'a>(
    options: &[(&'a str, &'a str)],
) -> (Option<&'a Path>, Vec<(&'a str, &'a str)>) {
    let ca_file = options
        .iter()
        .rev()
        .find(|(k, _)| *k == CA_FILE_OPTION)
        .map(|(_, v)| Path::new(*v));
    let rest = options
        .iter()
        .filter(|(k, _)| *k != CA_FILE_OPTION)
        .copied()
        .collect();
    (ca_file, rest)
}

/// Whether `error`, or anything it was caused by, says the server's TLS certificate is not
/// trusted.
pub fn is_untrusted_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let text = format!("{e} {e:?}");
        if UNTRUSTED.iter().any(|w| text.contains(w)) {
            return true;
        }
        current = e.source();
    }
    false
}

/// `error` explained when the TLS certificate of the store at `location` (credentials
/// redacted) was not trusted: a non-retryable [`Error::Backend`] that says to set `ca_file`.
/// Other errors are returned unchanged.
pub fn explain_untrusted_certificate(error: Error, location: &str) -> Error {
    if !is_untrusted_certificate(&error) {
        return error;
    }
    Error::backend(
        "TLS",
        format!("connecting to {location}"),
        format!(
            "the server's TLS certificate is not trusted ({}); if a private CA signed it, set \
             `ca_file` for this store to a PEM file of that CA (`[repository] ca_file`, \
             `ca_file` of a `[[copies]]` entry or of a bucket source)",
            root_cause(&error)
        ),
    )
    .caused_by(error)
}

/// The innermost message of `error`'s chain.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
pub(crate) mod roots {
    use std::path::Path;

    use dr_core::object_store::{Certificate, ClientConfigKey, ClientOptions};

    /// The certificates of a `ca_file`.
    pub type Roots = Vec<Certificate>;

    /// Reads the PEM certificates of `ca_file` (none without one).
    ///
    /// # Errors
    /// The reason in words: unreadable, not PEM, or no certificate in it.
    pub fn load(ca_file: Option<&Path>) -> Result<Roots, String> {
        let Some(path) = ca_file else {
            return Ok(Vec::new());
        };
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file {shown}: {e}"))?;
        let roots = Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {shown} is not a PEM file of certificates: {e}"))?;
        if roots.is_empty() {
            return Err(format!(
                "ca_file {shown} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
            ));
        }
        tracing::debug!(ca_file = %shown, certificates = roots.len(), "extra trusted roots");
        Ok(roots)
    }

    /// Client options trusting `roots` besides the system's, with the client settings of
    /// the environment (variables starting with `prefix`, which `parse` recognises) that a
    /// builder's `from_env` would have applied: setting client options replaces those.
    pub fn client_options(
        roots: Roots,
        prefix: &str,
        parse: impl Fn(&str) -> Option<ClientConfigKey>,
    ) -> ClientOptions {
        let mut options = ClientOptions::new();
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if let Some(client_key) = key
                .starts_with(prefix)
                .then(|| parse(&key.to_ascii_lowercase()))
                .flatten()
            {
                options = options.with_config(client_key, value);
            }
        }
        roots
            .into_iter()
            .fold(options, |options, root| options.with_root_certificate(root))
    }
}

#[cfg(not(any(feature = "aws", feature = "gcp", feature = "azure")))]
pub(crate) mod roots {
    use std::path::Path;

    /// No cloud store is compiled in: nothing to trust.
    pub type Roots = Vec<()>;

    /// Refuses a `ca_file`: no store here speaks TLS.
    pub fn load(ca_file: Option<&Path>) -> Result<Roots, String> {
        match ca_file {
            None => Ok(Vec::new()),
            Some(_) => Err("ca_file needs a cloud feature (aws, gcp, azure)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_is_taken_out_of_the_options() {
        let (ca, rest) = split_ca_file(&[("aws_region", "x"), ("ca_file", "/ca.pem")]);
        assert_eq!(ca, Some(Path::new("/ca.pem")));
        assert_eq!(rest, vec![("aws_region", "x")]);
    }

    #[test]
    fn only_certificate_failures_get_the_hint() {
        let io = |m: &str| Error::io("connecting", std::io::Error::other(m.to_owned()));
        let explained = explain_untrusted_certificate(
            io("invalid peer certificate: UnknownIssuer"),
            "s3://b/p",
        );
        let text = explained.to_string();
        assert!(
            text.contains("ca_file") && text.contains("s3://b/p"),
            "{text}"
        );
        assert!(text.contains("UnknownIssuer"), "{text}");
        let other = explain_untrusted_certificate(io("connection refused"), "s3://b/p");
        assert!(!other.to_string().contains("ca_file"), "{other}");
    }
}
