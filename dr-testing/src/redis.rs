//! A throwaway Redis 7 from Debian's `redis-server` package: 127.0.0.1, a random port, its
//! own temp dir, optionally a password, DEBUG commands enabled (for `DEBUG DIGEST`), no
//! diskless-sync delay; stopped by PID when dropped. [`RedisServer::start_tls`] serves TLS
//! only (`--port 0 --tls-port P`) with certificates from [`TlsCertificates`], requiring
//! client certificates or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TlsCertificates;

/// A running redis-server.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    password: Option<String>,
    tls: Option<ServerTls>,
}

/// Whether a TLS server asks clients for a certificate (`--tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// `yes`: a client without a certificate signed by the CA is refused.
    Required,
    /// `no`: clients are not asked for one.
    NotRequired,
}

/// Which certificate a TLS server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCertificate {
    /// The one [`TlsCertificates::ca`] signed.
    SignedByCa,
    /// [`TlsCertificates::self_signed`].
    SelfSigned,
}

/// A TLS server's certificates, for `redis-cli --tls`.
struct ServerTls {
    certs: TlsCertificates,
    presents: ServerCertificate,
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
        Self::start_in(binary, dir, password, settings, None)
    }

    /// Starts a TLS-only server (`--port 0 --tls-port P`) presenting `presents`, trusting
    /// [`TlsCertificates::ca`] for client certificates, with `requirepass` (if any) and extra
    /// settings as [`RedisServer::start_with`].
    pub fn start_tls(
        certs: &TlsCertificates,
        presents: ServerCertificate,
        clients: ClientCertificates,
        password: Option<&str>,
        settings: &[(&str, &str)],
    ) -> RedisServer {
        let (cert, key) = match presents {
            ServerCertificate::SignedByCa => certs.server(),
            ServerCertificate::SelfSigned => certs.self_signed(),
        };
        let auth = match clients {
            ClientCertificates::Required => "yes",
            ClientCertificates::NotRequired => "no",
        };
        let (cert, key, ca) = (path_str(&cert), path_str(&key), path_str(&certs.ca()));
        let mut all: Vec<(&str, &str)> = vec![
            ("tls-cert-file", &cert),
            ("tls-key-file", &key),
            ("tls-ca-cert-file", &ca),
            ("tls-auth-clients", auth),
        ];
        all.extend_from_slice(settings);
        let binary = crate::require_binary("redis-server", "redis-server");
        let dir = tempfile::Builder::new()
            .prefix("dr-redis-tls-")
            .tempdir()
            .expect("temp dir");
        let tls = ServerTls {
            certs: certs.clone(),
            presents,
        };
        Self::start_in(binary, dir, password, &all, Some(tls))
    }

    /// Starts a server on the `dump.rdb` already in `dir` (a restored file).
    pub fn start_on(dir: tempfile::TempDir, password: Option<&str>) -> RedisServer {
        let binary = crate::require_binary("redis-server", "redis-server");
        Self::start_in(binary, dir, password, &[], None)
    }

    fn start_in(
        binary: PathBuf,
        dir: tempfile::TempDir,
        password: Option<&str>,
        settings: &[(&str, &str)],
        tls: Option<ServerTls>,
    ) -> RedisServer {
        let port = crate::s3::free_port();
        let mut command = Command::new(binary);
        match tls {
            None => command.args(["--port", &port.to_string()]),
            Some(_) => command.args(["--port", "0", "--tls-port", &port.to_string()]),
        };
        command
            .args(["--bind", "127.0.0.1"])
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
            tls,
        };
        server.wait_until_ready();
        server
    }

    /// `redis://[:password@]127.0.0.1:PORT`, `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
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
        if let Some(tls) = &self.tls {
            command.args(tls.cli_args());
        }
        let out = command.args(args).output().expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Fills databases 0 to 3 with the fidelity suite's awkward corpus (generated by Lua on
    /// the server, so binary names need no escaping) and registers the Functions libraries
    /// `mylib` (`myfunc` returns its first argument) and `flagged` (a `no-writes` function).
    /// Database 0: every type in small and large encodings, a binary key and value, the empty
    /// key, a 1.6 MB string, a zset with `inf`/`-inf`, a stream with a deleted entry, two
    /// consumer groups, pending entries and an idle consumer, TTLs in ms precision and one in
    /// the year 3000; databases 1 to 3: a few keys each, some expiring.
    pub fn load_fidelity_corpus(&self) {
        self.cli(&["-n", "0", "EVAL", CORPUS_DB0, "0"]);
        for db in 1..=3 {
            self.cli(&[
                "-n",
                &db.to_string(),
                "EVAL",
                CORPUS_DB_N,
                "0",
                &db.to_string(),
            ]);
        }
        self.cli(&["FUNCTION", "LOAD", MYLIB]);
        self.cli(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=flagged\nredis.register_function{function_name='peek', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}, description='reads a key'}",
        ]);
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

impl ServerTls {
    /// `--tls --cacert ... --cert ... --key ...`: trusts what the server presents and always
    /// sends the client certificate.
    fn cli_args(&self) -> Vec<String> {
        let ca = match self.presents {
            ServerCertificate::SignedByCa => self.certs.ca(),
            ServerCertificate::SelfSigned => self.certs.self_signed().0,
        };
        let (cert, key) = self.certs.client();
        vec![
            "--tls".into(),
            "--cacert".into(),
            path_str(&ca),
            "--cert".into(),
            path_str(&cert),
            "--key".into(),
            path_str(&key),
        ]
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// The library the fidelity suite registers: `FCALL myfunc 0 x` returns `x`.
pub const MYLIB: &str =
    "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return args[1] end)";

const CORPUS_DB0: &str = r#"
local function bin(...) return string.char(...) end
redis.call('SET', 'string', 'hello')
redis.call('SET', bin(0, 1, 2, 255, 13, 10) .. 'name', bin(0, 255, 254, 10, 0))
redis.call('SET', '', 'the empty key')
redis.call('SET', 'int', '12345')
local parts = {}
for i = 1, 40000 do parts[i] = redis.sha1hex('big' .. i) end
redis.call('SET', 'big', table.concat(parts))
local raw = {}
for i = 0, 70000 do raw[#raw + 1] = bin((i * 7919) % 256) end
redis.call('SET', 'big:binary', table.concat(raw))
redis.call('SET', 'ttl:ms', 'v', 'PX', 123457)
redis.call('SET', 'ttl:far', 'v')
redis.call('PEXPIREAT', 'ttl:far', 32503680000123)
redis.call('RPUSH', 'list:small', 'a', 'b', bin(0))
redis.call('SADD', 'set:int', 1, 2, 3)
redis.call('SADD', 'set:small', 'x', bin(255))
redis.call('HSET', 'hash:small', 'f', 'v', bin(255), bin(0))
redis.call('HSET', 'hash:ttl', 'f', 'v')
redis.call('PEXPIRE', 'hash:ttl', 86400123)
redis.call('ZADD', 'zset:inf', 'inf', 'top', '-inf', 'bottom', '0', 'zero', '-1.5e-300', 'tiny', '3.141592653589793', 'pi')
for i = 1, 300 do
  local m = 'member-' .. i .. '-' .. string.rep('y', i % 70)
  redis.call('RPUSH', 'list:big', m)
  redis.call('SADD', 'set:big', m)
  redis.call('HSET', 'hash:big', m, i * 0.25)
  redis.call('ZADD', 'zset:big', i * 0.25, m)
  redis.call('XADD', 'stream', (1000 + i) .. '-' .. (i % 3), 'n', m, 'bin', bin(i % 256))
end
redis.call('XDEL', 'stream', '1005-2')
redis.call('XGROUP', 'CREATE', 'stream', 'readers', '0')
redis.call('XGROUP', 'CREATE', 'stream', 'late', '$')
redis.call('XREADGROUP', 'GROUP', 'readers', 'alice', 'COUNT', 5, 'STREAMS', 'stream', '>')
redis.call('XREADGROUP', 'GROUP', 'readers', 'bob', 'COUNT', 3, 'STREAMS', 'stream', '>')
redis.call('XACK', 'stream', 'readers', '1001-1')
redis.call('XGROUP', 'CREATECONSUMER', 'stream', 'readers', 'carol')
redis.call('XADD', 'stream:empty', '1-1', 'a', 'b')
redis.call('XDEL', 'stream:empty', '1-1')
redis.call('XGROUP', 'CREATE', 'stream:empty', 'g', '0')
return 1
"#;

const CORPUS_DB_N: &str = r#"
local db = ARGV[1]
redis.call('SET', 'k' .. db, 'value in db ' .. db)
redis.call('RPUSH', 'queue', 'job1', 'job2', db)
redis.call('SET', string.char(0, 10, tonumber(db)), 'binary', 'PX', 3600000 + tonumber(db))
redis.call('HSET', 'h', 'db', db)
redis.call('PEXPIREAT', 'h', 4102444800000 + tonumber(db))
redis.call('ZADD', 'z', db, 'm')
return 1
"#;

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
