//! A throwaway Redis 7 from Debian's `redis-server` package: 127.0.0.1, a random port, its
//! own temp dir, optionally a password, DEBUG commands enabled (for `DEBUG DIGEST`), no
//! diskless-sync delay; stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    password: Option<String>,
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> RedisServer {
        Self::start_with(None, &[])
    }

    /// Starts a server with `requirepass` set to `password` (if any) and extra
    /// `--name value` settings.
    pub fn start_with(password: Option<&str>, settings: &[(&str, &str)]) -> RedisServer {
        let binary = crate::require_binary("redis-server", "redis-server");
        let dir = tempfile::Builder::new()
            .prefix("dr-redis-")
            .tempdir()
            .expect("temp dir");
        Self::start_in(binary, dir, password, settings)
    }

    /// Starts a server on the `dump.rdb` already in `dir` (a restored file).
    pub fn start_on(dir: tempfile::TempDir, password: Option<&str>) -> RedisServer {
        let binary = crate::require_binary("redis-server", "redis-server");
        Self::start_in(binary, dir, password, &[])
    }

    fn start_in(
        binary: PathBuf,
        dir: tempfile::TempDir,
        password: Option<&str>,
        settings: &[(&str, &str)],
    ) -> RedisServer {
        let port = crate::s3::free_port();
        let mut command = Command::new(binary);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--enable-debug-command",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .args(["--daemonize", "no", "--logfile"])
            .arg(dir.path().join("redis.log"));
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        for (name, value) in settings {
            command.arg(format!("--{name}")).arg(value);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer {
            child,
            dir,
            port,
            password: password.map(str::to_owned),
        };
        server.wait_until_ready();
        server
    }

    /// `redis://[:password@]127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (holding `dump.rdb` after a SAVE).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `redis-cli` with `args` and returns its output (raw, for binary-safe checks use
    /// the library instead).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(crate::require_binary("redis-cli", "redis-server"));
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "--no-auth-warning",
        ]);
        if let Some(p) = &self.password {
            command.args(["-a", p]);
        }
        let out = command.args(args).output().expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.log().contains("Ready to accept connections")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server did not start on 127.0.0.1:{}: {}",
            self.port,
            self.log()
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
