//! PostgreSQL over TLS for tests: a [`PgServer`] with `ssl = on`, the server certificate of
//! [`TlsCertificates`], and a pg_hba.conf that takes TCP connections only over TLS ([`Hba`]),
//! with a client certificate for [`CERT_USER`].

use std::path::Path;

use crate::postgres::{PgServer, give_to_postgres};
use crate::tls::TlsCertificates;

pub use crate::tls::CERT_USER;

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
    /// The certificates are handed to the postgres user, so that dr run as that user (the
    /// archive command) can read them.
    pub fn start_tls(certs: &TlsCertificates, hba: Hba, settings: &[(&str, &str)]) -> PgServer {
        give_to_postgres(certs.dir());
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

fn configure_tls(data: &Path, certs: &TlsCertificates, hba: Hba) {
    for (from, to) in [
        ("server.pem", "server.crt"),
        ("server.key", "server.key"),
        ("ca.pem", "root.crt"),
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
