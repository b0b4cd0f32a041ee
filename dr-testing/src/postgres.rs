//! A throwaway PostgreSQL 15 cluster from Debian's `postgresql` package: initdb into a temp
//! dir, a random port on 127.0.0.1, the socket in the temp dir, fsync off, run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root), stopped by PID.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser password of every test cluster (scram-sha-256 over TCP).
pub const PASSWORD: &str = "dr-test-secret";
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster; stopped (fast shutdown) when dropped.
pub struct PgServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl PgServer {
    /// initdb + start. Panics with the package to install when PostgreSQL is missing.
    pub fn start() -> PgServer {
        Self::start_with(&[])
    }

    /// As [`PgServer::start`], with extra `-c name=value` server settings (e.g. archiving).
    pub fn start_with(settings: &[(&str, &str)]) -> PgServer {
        Self::start_with_env(settings, &[])
    }

    /// As [`PgServer::start_with`], the server running with extra environment variables
    /// (e.g. `LOCPATH`: locales only this server has).
    pub fn start_with_env(settings: &[(&str, &str)], env: &[(&str, &str)]) -> PgServer {
        Self::start_prepared(settings, env, |_| {})
    }

    /// initdb, then `prepare(data_dir)` (as root when the tests run as root: hand new files
    /// to the postgres user with [`give_to_postgres`]), then start.
    pub fn start_prepared(
        settings: &[(&str, &str)],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> PgServer {
        let initdb = Path::new(BIN).join("initdb");
        assert!(
            initdb.is_file(),
            "PostgreSQL 15 is not installed: run `apt-get install -y postgresql` (./scripts/test does this)"
        );
        let dir = tempfile::Builder::new()
            .prefix("dr-pg-")
            .tempdir()
            .expect("temp dir");
        let owner = postgres_owner();
        if let Some((uid, gid)) = owner {
            chown_recursive(dir.path(), uid, gid);
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if let Some((uid, gid)) = owner {
            chown_recursive(&pwfile, uid, gid);
        }
        let data = dir.path().join("data");
        let status = as_owner(Command::new(&initdb), owner)
            .args([
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", path(&pwfile)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb");
        assert!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        prepare(&data);
        let port = crate::s3::free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        if let Some((uid, gid)) = owner {
            chown_recursive(&dir.path().join("server.log"), uid, gid);
        }
        let child = as_owner(Command::new(Path::new(BIN).join("postgres")), owner)
            .args([
                "-D",
                path(&data),
                "-p",
                &port.to_string(),
                "-k",
                path(dir.path()),
            ])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ])
            .args([
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=40",
                "-c",
                "shared_buffers=64MB",
            ])
            .args(
                settings
                    .iter()
                    .flat_map(|(k, v)| ["-c".to_owned(), format!("{k}={v}")]),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let server = PgServer { child, dir, port };
        server.wait_until_ready();
        server
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL through `psql` as the superuser (over the socket) and returns its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                path(self.dir.path()),
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = Command::new(Path::new(BIN).join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        panic!("PostgreSQL did not start on 127.0.0.1:{}: {log}", self.port);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `postgres` user's uid and gid when running as root (else run as ourselves).
pub fn postgres_owner() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid_line = status.lines().find(|l| l.starts_with("Uid:"))?;
    if uid_line.split_whitespace().nth(1)? != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("no postgres user: apt-get install -y postgresql creates it");
    let fields: Vec<&str> = entry.split(':').collect();
    Some((
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    ))
}

fn as_owner(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

/// Hands `path` (recursively) to the `postgres` user when running as root, so that commands
/// the server runs (archive_command) can use it; does nothing otherwise.
pub fn give_to_postgres(path: &Path) {
    if let Some((uid, gid)) = postgres_owner() {
        chown_recursive(path, uid, gid);
    }
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown {}", path.display());
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Where the PostgreSQL binaries are.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(BIN)
}

/// Stops the server whose data directory is `data_dir` (fast shutdown, by the PID in its
/// `postmaster.pid`) and waits until it is gone; for servers the tests did not start
/// themselves (a restored cluster started by `dr restore --start`).
pub fn stop_cluster(data_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text.lines().next().map(str::trim) else {
        return;
    };
    let _ = Command::new("kill").args(["-INT", pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}
