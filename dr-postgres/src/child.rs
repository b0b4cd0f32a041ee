//! Running pg_dump / pg_restore / pg_dumpall: missing binaries named with their package,
//! stderr kept (bounded) for the error message, the exit status deciding success.

use std::process::Stdio;

use dr_core::{Error, Result};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

/// Keeps at most this much of a child's stderr.
const STDERR_LIMIT: usize = 64 * 1024;

/// A started child with its stderr being collected.
pub struct Running {
    pub child: Child,
    stderr: JoinHandle<String>,
    program: String,
}

/// Spawns `command` (stdin/stdout as configured by the caller, stderr collected).
///
/// # Errors
/// [`Error::ToolMissing`] naming the Debian package when the program is not installed.
pub fn spawn(mut command: Command, program: &str) -> Result<Running> {
    let mut child = command.stderr(Stdio::piped()).spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ToolMissing {
            program: program.to_owned(),
            install: "run `apt-get install -y postgresql-client` (the version must be at least the server's)".into(),
        },
        _ => Error::io(format!("starting {program}"), e),
    })?;
    let stderr = child.stderr.take().map_or_else(
        || tokio::spawn(async { String::new() }),
        |s| tokio::spawn(collect(s)),
    );
    Ok(Running {
        child,
        stderr,
        program: program.to_owned(),
    })
}

async fn collect(mut stderr: ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if kept.len() < STDERR_LIMIT {
            kept.extend_from_slice(&buf[..n.min(STDERR_LIMIT - kept.len())]);
        }
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

impl Running {
    /// Waits for the exit; a non-zero status is an error carrying stderr.
    ///
    /// # Errors
    /// [`Error::Tool`] for a non-zero exit; [`Error::Io`] when waiting fails.
    pub async fn finish(mut self) -> Result<String> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io(format!("waiting for {}", self.program), e))?;
        let stderr = self.stderr.await.unwrap_or_default();
        if status.success() {
            return Ok(stderr);
        }
        let hint = crate::tls::explain::child_hint(&stderr);
        Err(Error::tool(&self.program, status, stderr).with_hint(hint))
    }

    /// Kills the child and returns `error` (used when the other side of the stream failed).
    pub async fn abort(mut self, error: Error) -> Error {
        let _ = self.child.kill().await;
        let stderr = self.stderr.await.unwrap_or_default();
        tracing::debug!(program = %self.program, %stderr, "child stopped after a failure");
        error
    }
}

/// The major version printed by `PROGRAM --version` (e.g. 15).
///
/// # Errors
/// [`Error::ToolMissing`] when it is missing, [`Error::InvalidData`] when it prints something
/// unexpected.
pub async fn major_version(program: &str) -> Result<(u32, String)> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .await
        .map_err(|_| Error::ToolMissing {
            program: program.to_owned(),
            install: "run `apt-get install -y postgresql-client`".into(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = text
        .split_whitespace()
        .last()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| {
            Error::invalid_data(
                format!("version of {program}"),
                format!("`{program} --version` printed {text:?}"),
            )
        })?;
    Ok((major, text))
}

/// Whether this process runs as root (PostgreSQL's server refuses to).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// A server-side program (`pg_ctl`, `postgres`) of the given server version: Debian keeps
/// them in `/usr/lib/postgresql/<major>/bin`, off the PATH.
pub fn server_binary(program: &str, version_num: i64) -> std::path::PathBuf {
    let debian = std::path::PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin/{program}",
        version_num / 10000
    ));
    if debian.is_file() {
        debian
    } else {
        std::path::PathBuf::from(program)
    }
}

/// [`running_as_root`] on a blocking thread (it reads `/proc`), for async code.
pub async fn running_as_root_async() -> bool {
    tokio::task::spawn_blocking(running_as_root)
        .await
        .unwrap_or(false)
}

/// [`server_binary`] on a blocking thread (it looks at the file system), for async code.
pub async fn server_binary_async(program: &str, version_num: i64) -> std::path::PathBuf {
    let name = program.to_owned();
    tokio::task::spawn_blocking(move || server_binary(&name, version_num))
        .await
        .unwrap_or_else(|_| std::path::PathBuf::from(program))
}

/// Whether `path` exists, asked without blocking the runtime (an error counts as absent).
pub async fn exists(path: &std::path::Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}
