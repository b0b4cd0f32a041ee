//! The work directory of the point-in-time recovery tests (cli_pitr, fidelity_postgres_pitr):
//! a repository, a key, a configuration for source `db` and an archiving server.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use dr_testing::PgServer;
use dr_testing::postgres::{PASSWORD, give_to_postgres, postgres_owner};

pub struct Work {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Work {
    pub fn new(retention: &str) -> Work {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dr.toml");
        give_to_postgres(dir.path());
        let work = Work { dir, config };
        work.write_config(1, retention);
        work.ok(&["keygen"]);
        work.ok(&["init"]);
        work
    }

    pub fn write_config(&self, port: u16, retention: &str) {
        self.write_config_url(
            &format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"),
            retention,
        );
    }

    /// The configuration with source `db` at `url` (e.g. one with TLS parameters).
    pub fn write_config_url(&self, url: &str, retention: &str) {
        std::fs::write(
            &self.config,
            format!(
                "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n{retention}\n[sources.db]\nkind = \"postgres\"\nmethod = \"physical\"\nurl = \"{url}\"\n",
                self.dir.path().display()
            ),
        )
        .unwrap();
        give_to_postgres(&self.config);
    }

    /// Runs dr as the postgres user (when root), as an operator restoring a cluster would.
    pub fn dr(&self, args: &[&str]) -> (i32, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command.arg("--config").arg(&self.config).args(args);
        if let Some((uid, gid)) = postgres_owner() {
            // A home of its own, as `sudo -u postgres` gives: libpq reads ~/.postgresql/.
            command.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        let out = command.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.dr(args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn archive_command(&self) -> String {
        format!(
            "{} --config {} wal-push --source db %p",
            env!("CARGO_BIN_EXE_dr"),
            self.config.display()
        )
    }

    /// Starts a cluster that archives into this repository, with the archive settings also
    /// in postgresql.auto.conf so that base backups carry them.
    pub fn archiving_server(&self, retention: &str) -> PgServer {
        let command = self.archive_command();
        let server = PgServer::start_with(&[
            ("archive_mode", "on"),
            ("archive_command", &command),
            ("wal_level", "replica"),
        ]);
        server.psql(
            "postgres",
            &format!("ALTER SYSTEM SET archive_command = '{command}'"),
        );
        server.psql("postgres", "ALTER SYSTEM SET archive_mode = on");
        self.write_config(server.port(), retention);
        server
    }
}
