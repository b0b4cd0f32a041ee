//! Throwaway certificates for every TLS test (PostgreSQL, Redis, the S3-compatible server),
//! made with the `openssl` CLI (Debian's `openssl` package) in a temp dir: a CA, a server
//! certificate it signed for `localhost` and `127.0.0.1`, a client certificate it signed for
//! [`CERT_USER`], a second CA that signed nothing here (the "wrong CA"), and a self-signed
//! server certificate. EC P-256 keys (quick to make), each 0600.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The common name of the client certificate: the user PostgreSQL's `cert` lines log in.
pub const CERT_USER: &str = "certuser";

/// The certificates, removed when the last clone is dropped.
#[derive(Clone)]
pub struct TlsCertificates {
    dir: Arc<tempfile::TempDir>,
}

impl TlsCertificates {
    /// Makes them all (a few hundred ms).
    pub fn generate() -> TlsCertificates {
        let dir = tempfile::Builder::new()
            .prefix("dr-tls-")
            .tempdir()
            .expect("temp dir");
        let certs = TlsCertificates { dir: Arc::new(dir) };
        certs.make_ca("ca", "dr test CA");
        certs.make_ca("other-ca", "dr test CA that signed nothing");
        certs.make_leaf("server", "localhost", "serverAuth");
        certs.make_leaf("client", CERT_USER, "clientAuth");
        certs.make_self_signed("self-signed");
        certs
    }

    /// The CA that signed the server and client certificates (PEM).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed none of these certificates.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// The server certificate (`localhost`, `127.0.0.1`) and its key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.path("server.pem"), self.path("server.key"))
    }

    /// The client certificate and its key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client.key"))
    }

    /// A self-signed server certificate (`localhost`, `127.0.0.1`) and its key.
    pub fn self_signed(&self) -> (PathBuf, PathBuf) {
        (self.path("self-signed.pem"), self.path("self-signed.key"))
    }

    /// A file of this set by name (`server.pem`, `server.key`...), or a new one's path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn make_ca(&self, name: &str, subject: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3",
            "-subj",
            &format!("/CN={subject}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// A certificate signed by `ca.pem`, for `usage` (serverAuth or clientAuth).
    fn make_leaf(&self, name: &str, subject: &str, usage: &str) {
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n"
            ),
        )
        .expect("write the extensions");
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={subject}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn make_self_signed(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new(crate::require_binary("openssl", "openssl"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libpq and PostgreSQL refuse keys others can read.
        if let Some(key) = args
            .iter()
            .position(|a| *a == "-keyout")
            .map(|i| args[i + 1])
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.path(key), std::fs::Permissions::from_mode(0o600))
                .expect("chmod the key");
        }
    }

    /// The directory holding them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
