//! Whether a running server would undo a file restore: a server that keeps running saves its
//! dataset over `dump.rdb` when it next saves or shuts down, so the restored file would be
//! lost. Before anything is written (and again after the `stop_command` ran) the server at the
//! source's URL is asked where it saves (`CONFIG GET dir` + `dbfilename`); if that is the
//! file being restored, the restore is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dr_core::{Error, Result};

use redis::Value;

use crate::connection::RedisConnection;

/// How long one probe waits for the connection and for the replies.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a server is given to go away after the `stop_command` returned.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the server at the source's URL is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Live {
    /// Nothing accepts connections there.
    Down,
    /// Something answers; `file` is where it saves, when it said so (`CONFIG GET` may be
    /// refused by an ACL or a missing password).
    Running {
        /// `dir`/`dbfilename`.
        file: Option<PathBuf>,
    },
}

/// Asks the server at `conn`. Anything that accepts the TCP connection counts as running (a
/// server busy saving accepts but does not answer; a TLS handshake that fails still means a
/// server is there): only a refused or unanswered connection is [`Live::Down`].
pub(crate) async fn probe(conn: &RedisConnection) -> Live {
    let Ok(tcp) = conn.tcp(PROBE_TIMEOUT).await else {
        return Live::Down;
    };
    let asked = async {
        let mut client = conn.client_over(tcp, PROBE_TIMEOUT).await?;
        // A refused login still means a server is there; CONFIG then fails with NOAUTH.
        let _ = conn.login(&mut client).await;
        client
            .pipeline(&[
                vec![&b"CONFIG"[..], b"GET", b"dir"],
                vec![&b"CONFIG"[..], b"GET", b"dbfilename"],
            ])
            .await
    };
    let file = match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Ok(Ok(replies)) => match replies.as_slice() {
            [Ok(dir), Ok(name)] => config_value(dir)
                .zip(config_value(name))
                .map(|(dir, name)| PathBuf::from(dir).join(name)),
            _ => None,
        },
        _ => None,
    };
    Live::Running { file }
}

/// The value of a `CONFIG GET name` reply (`[name, value]`).
fn config_value(reply: &Value) -> Option<String> {
    match reply {
        Value::Array(items) => match items.as_slice() {
            [_, Value::BulkString(value)] => Some(String::from_utf8_lossy(value).into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// Refuses to write `target` while the server at `conn` runs and saves to it (or, when it
/// does not say where it saves, when `target` is the `rdb_path` configured for it).
pub(crate) async fn refuse_if_running(
    conn: &RedisConnection,
    target: &Path,
    configured: &Path,
) -> Result<()> {
    let Some(uses) = saves_to_off_runtime(probe(conn).await, target, configured).await else {
        return Ok(());
    };
    Err(Error::TargetInUse {
        target: target.display().to_string(),
        holder_pid: None,
        holder: format!("the Redis server at {conn} is running and {uses}"),
        hint: format!(
            "it would overwrite the restored {target} when it next saves or shuts down, undoing the restore. Nothing was written. Configure stop_command and start_command for this source (e.g. stop_command = \"systemctl stop redis-server\", start_command = \"systemctl start redis-server\"), or stop the server first, or replay the keys into the running server with --server {conn} instead; --force swaps the file in anyway",
            target = target.display()
        ),
    })
}

/// After the `stop_command` ran: waits up to [`STOP_GRACE`] for the server to stop answering;
/// refuses if it still runs and saves to `target`.
pub(crate) async fn refuse_if_still_running(
    conn: &RedisConnection,
    target: &Path,
    configured: &Path,
    stop_command: &str,
) -> Result<()> {
    let deadline = Instant::now() + STOP_GRACE;
    let uses = loop {
        let Some(uses) = saves_to_off_runtime(probe(conn).await, target, configured).await else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            break uses;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    Err(Error::TargetInUse {
        target: target.display().to_string(),
        holder_pid: None,
        holder: format!(
            "stop_command ({stop_command}) ran, but the Redis server at {conn} still answers {} s later and {uses}",
            STOP_GRACE.as_secs()
        ),
        hint: format!(
            "it would overwrite {target} when it next saves or shuts down, so nothing was swapped: {target} is as it was, the server was left as it is (start_command was not run). Make stop_command stop the server (e.g. \"systemctl stop redis-server\", or \"redis-cli -p PORT shutdown nosave\"), then restore again; --force swaps the file in anyway",
            target = target.display()
        ),
    })
}

/// [`saves_to`] on a blocking thread (it resolves paths on the filesystem).
async fn saves_to_off_runtime(live: Live, target: &Path, configured: &Path) -> Option<String> {
    let (target, configured) = (target.to_owned(), configured.to_owned());
    tokio::task::spawn_blocking(move || saves_to(&live, &target, &configured))
        .await
        .unwrap_or_else(|e| Some(format!("could not be asked where it saves ({e})")))
}

/// How the running server uses `target` (for the message), or `None` when it does not or
/// is not running.
fn saves_to(live: &Live, target: &Path, configured: &Path) -> Option<String> {
    match live {
        Live::Down => None,
        Live::Running { file: Some(file) } => (resolved(file) == resolved(target))
            .then(|| format!("saves to {}", file.display())),
        Live::Running { file: None } => (resolved(configured) == resolved(target)).then(|| {
            "did not say where it saves (CONFIG GET was refused), and the target is the rdb_path configured for it".to_owned()
        }),
    }
}

/// `path` with symbolic links and `..` resolved; for a file that does not exist yet, its
/// directory resolved and the name joined.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::canonicalize(parent).map_or_else(|_| path.to_owned(), |dir| dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_saving_elsewhere_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("dump.rdb");
        std::fs::write(&ours, b"x").unwrap();
        let elsewhere = Live::Running {
            file: Some(dir.path().join("other.rdb")),
        };
        assert_eq!(saves_to(&elsewhere, &ours, &ours), None);
        assert_eq!(saves_to(&Live::Down, &ours, &ours), None);
        // The same file through `..` and a not-yet-existing file resolve alike.
        let via = dir.path().join("sub/../dump.rdb");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let same = Live::Running {
            file: Some(via.clone()),
        };
        assert!(saves_to(&same, &ours, &ours).is_some());
        let fresh = dir.path().join("fresh.rdb");
        let fresh_via = Live::Running {
            file: Some(dir.path().join("sub/../fresh.rdb")),
        };
        assert!(saves_to(&fresh_via, &fresh, &ours).is_some());
    }

    #[test]
    fn an_unknown_file_is_compared_with_the_configured_rdb_path() {
        let dir = tempfile::tempdir().unwrap();
        let configured = dir.path().join("dump.rdb");
        let unknown = Live::Running { file: None };
        assert!(saves_to(&unknown, &configured, &configured).is_some());
        assert_eq!(
            saves_to(&unknown, &dir.path().join("copy.rdb"), &configured),
            None
        );
    }
}
