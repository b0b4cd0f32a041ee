//! `dr daemon` for real: a schedule every two seconds backs up, verifies and prunes, serves
//! its metrics on 127.0.0.1, and stops on SIGTERM; SIGTERM in the middle of a long backup
//! abandons it with nothing half-listed, and prune then removes what it wrote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::ok;
use dr_testing::s3::free_port;

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let log = config.with_file_name("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dr"))
            .arg("--config")
            .arg(config)
            .arg("daemon")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `text` at least `times` times.
    fn wait_for(&self, text: &str, times: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} x{times} not seen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self, within: Duration) -> i32 {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let config = dir.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n{body}",
            dir.display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    config
}

/// `GET path` on 127.0.0.1:port: the status line, the headers and the body.
fn get(port: u16, path: &str) -> (String, String, String) {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

fn metrics(port: u16) -> String {
    let (status, headers, body) = get(port, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{body}");
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    body
}

/// Waits until `/healthz` answers `code`; returns its JSON body.
fn wait_for_health(port: u16, code: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, _, body) = get(port, "/healthz");
        if status.starts_with(&format!("HTTP/1.1 {code}")) {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "/healthz stays {status}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn schedules_back_up_verify_and_prune_then_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a.txt"), b"hello").unwrap();
    let db = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[retention]
keep_last = 2

[daemon]
metrics = "127.0.0.1:{port}"

[[schedules]]
name = "every-2s"
cron = "*/2 * * * * *"
verify = "checksums"

[sources.app]
kind = "sqlite"
path = "{0}/app.db"

[sources.files]
kind = "directory"
path = "{0}/files"
"#,
            dir.path().display()
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("run finished", 4, Duration::from_secs(60));
    let log = daemon.log();
    assert!(
        log.contains("backed up app") && log.contains("recovery point"),
        "{log}"
    );
    // The daemon logs verify results (tracing), it prints no verify table.
    assert!(
        log.contains("verified source=\"app\"")
            && log.contains("ok=true")
            && log.contains("deleted"),
        "{log}"
    );

    let text = metrics(port);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let bytes = scrape
        .samples
        .iter()
        .find(|s| s.metric == "dr_backup_last_bytes" && s.labels.get("source") == Some("app"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(matches!(bytes.value, prometheus_parse::Value::Gauge(v) if v > 0.0));
    assert!(text.ends_with("# EOF\n"), "{text}");

    let health = wait_for_health(port, "200", Duration::from_secs(30));
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["loop_alive"], true, "{health}");
    assert_eq!(health["last_status_ok"], true, "{health}");
    let (status, _, _) = get(port, "/nothing-here");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    assert_eq!(daemon.terminate(Duration::from_secs(30)), 0);
    // The endpoint stopped with the daemon.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(
        daemon.log().contains("dr daemon stopped"),
        "{}",
        daemon.log()
    );
    // Pruned as it went (keep_last = 2, a point kept whole), and what is left verifies.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&config, &["list", "--json", "app"])).unwrap();
    let count = listed.as_array().unwrap().len();
    assert!((2..=3).contains(&count), "{listed}");
    ok(&config, &["verify"]);
}

#[test]
fn healthz_is_unhealthy_while_the_status_cannot_be_gathered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[daemon]\nmetrics = \"127.0.0.1:{port}\"\n\n[[schedules]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\n\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    // No repository yet: the status cannot be computed.
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("serving metrics", 1, Duration::from_secs(30));
    let health = wait_for_health(port, "503", Duration::from_secs(30));
    assert_eq!(health["loop_alive"], true, "{health}");
    assert_eq!(health["last_status_ok"], false, "{health}");
    let error = health["last_status_error"].as_str().unwrap_or_default();
    assert!(error.contains("repo"), "{health}");
    let (status, _, body) = get(port, "/metrics");
    assert!(status.starts_with("HTTP/1.1 500"), "{status} {body}");

    ok(&config, &["init"]);
    // A scrape gathers the status again, and health follows.
    metrics(port);
    let health = wait_for_health(port, "200", Duration::from_secs(10));
    assert!(health["last_status_error"].is_null(), "{health}");
    assert_eq!(daemon.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn sigterm_mid_backup_abandons_it_and_lists_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    // Sparse: instant to make, seconds to read, hash and compress.
    let file = std::fs::File::create(big.join("disk.img")).unwrap();
    file.set_len(6 << 30).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[daemon]\nstop_timeout = \"0s\"\n\n[[schedules]]\nname = \"big\"\ncron = \"* * * * * *\"\nsource = \"big\"\n\n[sources.big]\nkind = \"directory\"\npath = \"{}\"\n",
            big.display()
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("run started", 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(daemon.terminate(Duration::from_secs(30)), 0);
    let log = daemon.log();
    assert!(log.contains("abandoned 1 runs"), "{log}");
    assert!(
        !log.contains("backed up big"),
        "the backup finished too soon: {log}"
    );
    let listed = ok(&config, &["list", "--json"]);
    assert_eq!(listed.trim(), "[]", "nothing half-written is listed");
    let out = ok(&config, &["prune", "--orphan-grace", "0s"]);
    assert!(out.contains("orphaned objects removed"), "{out}");
    let parts = walk_files(&dir.path().join("repo/backups"));
    assert!(parts.is_empty(), "prune left {parts:?}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}
