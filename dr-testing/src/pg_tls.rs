//! PostgreSQL over TLS for tests: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, a second CA that signed nothing the server has (the "wrong CA"), and a client
//! certificate for user `certuser`, all made with Debian's `openssl` CLI; and a [`PgServer`]
//! with `ssl = on` and a pg_hba.conf that takes TCP connections only over TLS ([`Hba`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::postgres::{PgServer, give_to_postgres};

/// The user whose pg_hba.conf line asks for a client certificate (`hostssl ... cert`).
pub const CERT_USER: &str = "certuser";

/// Certificates and keys in a temp dir (handed to the postgres user when running as root, so
/// that dr run as that user can read them; keys 0600).
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes the CAs and certificates. Panics with the package to install when `openssl` is
    /// missing.
    pub fn generate() -> TestCerts {
        crate::require_binary("openssl", "openssl");
        let dir = tempfile::Builder::new()
            .prefix("dr-pg-tls-")
            .tempdir()
            .expect("temp dir");
        let certs = TestCerts { dir };
        certs.make_ca("ca", "dr test CA");
        certs.make_ca("wrong-ca", "dr test wrong CA");
        let server = "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\n";
        certs.make_leaf("server", "localhost", server);
        certs.make_leaf("client", CERT_USER, "extendedKeyUsage = clientAuth\n");
        give_to_postgres(certs.dir.path());
        certs
    }

    /// The CA that signed the server's and the client's certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed nothing the server presents.
    pub fn wrong_ca(&self) -> PathBuf {
        self.path("wrong-ca.crt")
    }

    /// The client certificate of [`CERT_USER`] and its key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.crt"), self.path("client.key"))
    }

    /// A file of this set by name (`server.crt`, `server.key`...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn make_ca(&self, name: &str, common_name: &str) {
        let config = format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {common_name}\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
        );
        let config_file = format!("{name}.cnf");
        std::fs::write(self.path(&config_file), config).expect("CA config");
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        self.openssl(&[
            "req",
            "-x509",
            "-config",
            &config_file,
            "-extensions",
            "v3_ca",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "3650",
        ]);
    }

    fn make_leaf(&self, name: &str, common_name: &str, extensions: &str) {
        let ext_file = format!("{name}.ext");
        std::fs::write(
            self.path(&ext_file),
            format!("basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{extensions}"),
        )
        .expect("extensions");
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN={common_name}");
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            &cert,
            "-extfile",
            &ext_file,
        ]);
        chmod(&self.path(&key), 0o600);
    }
}

/// Which TCP connections the server's pg_hba.conf takes (the local socket always trusts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hba {
    /// `hostssl` lines only: plaintext TCP is refused ("no encryption").
    SslOnly,
    /// `host` lines: TLS and plaintext both.
    Both,
}

impl PgServer {
    /// A server with `ssl = on` (in postgresql.conf, so that base backups carry it), the
    /// server certificate of `certs` in its data directory (key 0600, owned by postgres),
    /// `certs`' CA as `ssl_ca_file`, and pg_hba.conf as `hba` says: password (scram) for
    /// everyone, a client certificate for [`CERT_USER`], on 127.0.0.1 and for replication.
    pub fn start_tls(certs: &TestCerts, hba: Hba, settings: &[(&str, &str)]) -> PgServer {
        Self::start_prepared(settings, &[], |data| configure_tls(data, certs, hba))
    }

    /// `postgres://postgres:PASSWORD@HOST:PORT/DB?QUERY`, e.g. a query of
    /// `sslmode=verify-full&sslrootcert=...`.
    pub fn url_with(&self, host: &str, db: &str, query: &str) -> String {
        format!(
            "postgres://postgres:{}@{host}:{}/{db}?{query}",
            crate::postgres::PASSWORD,
            self.port()
        )
    }
}

fn configure_tls(data: &Path, certs: &TestCerts, hba: Hba) {
    for (from, to) in [
        ("server.crt", "server.crt"),
        ("server.key", "server.key"),
        ("ca.crt", "root.crt"),
    ] {
        std::fs::copy(certs.path(from), data.join(to)).expect("copy a certificate");
    }
    chmod(&data.join("server.key"), 0o600);
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n");
    std::fs::write(&conf, text).expect("postgresql.conf");
    let host = match hba {
        Hba::SslOnly => "hostssl",
        Hba::Both => "host",
    };
    std::fs::write(
        data.join("pg_hba.conf"),
        format!(
            "local all all trust\nlocal replication all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             {host} all all 127.0.0.1/32 scram-sha-256\n\
             {host} replication all 127.0.0.1/32 scram-sha-256\n"
        ),
    )
    .expect("pg_hba.conf");
    give_to_postgres(data);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
