//! Verification: checksums; the RDB (or key records) parsed to the end with the key counts
//! compared with those recorded at backup time; at `Restore` level, a scratch redis-server
//! loading the backup, its key counts compared too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dr_core::Refusal;
use dr_core::{
    BackupReader, Error, Findings, KindVerifier, ProblemKind, Restore, RestoreOptions, Result,
    Verify, VerifyLevel, VerifyProblem, VerifyReport, async_trait, verify_backup,
};

use crate::backup::{LOGICAL_KIND, RDB_ARTIFACT, keyspace};
use crate::connection::RedisConnection;
use crate::logical::{KEYS_ARTIFACT, KeyReader};
use crate::rdb::{DbCounts, read_rdb};
use crate::replay::RedisReplayTarget;
use crate::restore::{check_file, detail};

/// Verifies Redis backups.
#[derive(Debug, Clone, Default)]
pub struct RedisVerifier;

impl RedisVerifier {
    /// A verifier (`Restore` level needs `redis-server` on the PATH).
    pub fn new() -> Self {
        RedisVerifier
    }
}

#[async_trait]
impl Verify for RedisVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

#[async_trait]
impl KindVerifier for RedisVerifier {
    /// The RDB (or key records) parsed to its end, key counts compared with the recorded.
    async fn check_structure(&self, backup: &BackupReader) -> Option<Result<Findings>> {
        let recorded = recorded_counts(backup);
        let mut found = Findings::default();
        match parsed_counts(backup).await {
            Ok(counts) => compare(&mut found, "the backup", &recorded, &counts, false),
            Err(e) => found
                .problems
                .push(VerifyProblem::new(ProblemKind::Structure, detail(&e))),
        }
        Some(Ok(found))
    }

    fn can_test_restore(&self) -> bool {
        true
    }

    /// A scratch redis-server loads the backup; its key counts and Functions libraries are
    /// compared with the recorded ones.
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let (counts, libraries) = scratch_counts(backup)
            .await
            .map_err(|e| Error::refused(Refusal::Unavailable, detail(&e)))?;
        let mut found = Findings::default();
        let recorded = recorded_counts(backup);
        compare(
            &mut found,
            "a scratch redis-server",
            &recorded,
            &counts,
            true,
        );
        compare_libraries(&mut found, recorded_libraries(backup), libraries);
        Ok(found)
    }
}

/// The per-database counts recorded at backup time.
pub(crate) fn recorded_counts(backup: &BackupReader) -> BTreeMap<u32, DbCounts> {
    let info = &backup.manifest().source_info;
    let value = info
        .get("rdb")
        .and_then(|rdb| rdb.get("databases"))
        .or_else(|| info.get("databases"));
    value
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The number of Functions libraries recorded at backup time (0 when none were recorded).
fn recorded_libraries(backup: &BackupReader) -> u64 {
    let info = &backup.manifest().source_info;
    info.get("rdb")
        .and_then(|rdb| rdb.get("functions"))
        .or_else(|| info.get("functions"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn compare_libraries(report: &mut Findings, recorded: u64, loaded: u64) {
    if recorded == loaded {
        if recorded > 0 {
            report.passed.push(format!(
                "a scratch redis-server holds the recorded {recorded} Functions libraries"
            ));
        }
    } else {
        report.problems.push(VerifyProblem::new(
            ProblemKind::Structure,
            format!(
                "a scratch redis-server holds {loaded} Functions libraries, the backup recorded {recorded}"
            ),
        ));
    }
}

/// Reads the backup's artifact to its end (every part checked) and parses all of it.
pub(crate) async fn parsed_counts(backup: &BackupReader) -> Result<BTreeMap<u32, DbCounts>> {
    if backup.manifest().kind == LOGICAL_KIND {
        let mut artifact = backup.artifact(KEYS_ARTIFACT)?;
        let started_ms = backup.manifest().started_at.timestamp_millis();
        let mut reader = KeyReader::new(&mut artifact, started_ms).await?;
        let mut counts: BTreeMap<u32, DbCounts> = BTreeMap::new();
        while let Some(record) = reader.next().await? {
            let entry = counts.entry(record.db).or_default();
            entry.keys += 1;
            entry.expires += u64::from(record.expires_at_ms.is_some());
        }
        // Parts past the end marker (there should be none) are checked all the same.
        while artifact.next_chunk().await?.is_some() {}
        return Ok(counts);
    }
    let artifact = backup.artifact(RDB_ARTIFACT)?;
    let handle = tokio::runtime::Handle::current();
    let summary = tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(artifact, handle);
        let mut input = std::io::BufReader::with_capacity(1 << 20, bridge);
        let summary = read_rdb(&mut input, None)?;
        std::io::copy(&mut input, &mut std::io::sink())
            .map_err(|e| Error::from_io("reading the RDB", e))?;
        Ok::<_, Error>(summary)
    })
    .await
    .map_err(|e| Error::internal("checking the RDB", e))??;
    Ok(summary.databases)
}

/// Key counts per database must match; on a loaded server, keys whose TTL passed since the
/// backup may be missing (at most the recorded expiring keys).
fn compare(
    report: &mut Findings,
    what: &str,
    recorded: &BTreeMap<u32, DbCounts>,
    actual: &BTreeMap<u32, DbCounts>,
    ttl_may_pass: bool,
) {
    let problems = mismatches(what, recorded, actual, ttl_may_pass);
    if problems.is_empty() {
        let total: u64 = actual.values().map(|c| c.keys).sum();
        report.passed.push(format!(
            "{what} holds the recorded keys ({total} in {} databases)",
            actual.len()
        ));
    }
    report.problems.extend(
        problems
            .into_iter()
            .map(|p| VerifyProblem::new(ProblemKind::Structure, p)),
    );
}

/// One line per database whose key count is not the recorded one.
pub(crate) fn mismatches(
    what: &str,
    recorded: &BTreeMap<u32, DbCounts>,
    actual: &BTreeMap<u32, DbCounts>,
    ttl_may_pass: bool,
) -> Vec<String> {
    let dbs: std::collections::BTreeSet<_> = recorded.keys().chain(actual.keys()).collect();
    let mut problems = Vec::new();
    for db in dbs {
        let want = recorded.get(db).copied().unwrap_or_default();
        let got = actual.get(db).copied().unwrap_or_default();
        let lowest = if ttl_may_pass {
            want.keys - want.expires
        } else {
            want.keys
        };
        if got.keys > want.keys || got.keys < lowest {
            problems.push(format!(
                "db{db}: {what} holds {} keys, the backup recorded {}",
                got.keys, want.keys
            ));
        }
    }
    problems
}

/// Loads the backup into a scratch redis-server and reads its keyspace.
async fn scratch_counts(backup: &BackupReader) -> Result<(BTreeMap<u32, DbCounts>, u64)> {
    let dir = tempfile::Builder::new()
        .prefix("dr-verify-redis-")
        .tempdir()
        .map_err(|e| Error::io("creating a scratch directory", e))?;
    let logical = backup.manifest().kind == LOGICAL_KIND;
    if !logical {
        let rdb = dir.path().join("dump.rdb");
        let mut file = tokio::fs::File::create(&rdb)
            .await
            .map_err(|e| Error::io("creating the scratch RDB", e))?;
        backup.copy_artifact(RDB_ARTIFACT, &mut file).await?;
        check_file(&rdb).await?;
    }
    let server = ScratchServer::start(dir.path()).await?;
    let conn = RedisConnection::from_url(&format!("redis://127.0.0.1:{}", server.port))?;
    if logical {
        RedisReplayTarget::new(conn.clone())
            .already_checked()
            .restore(backup, &RestoreOptions::default())
            .await?;
    }
    let mut client = conn.connect().await?;
    let counts = keyspace(&client.info("keyspace").await?)
        .into_iter()
        .map(|(db, (keys, expires))| (db, DbCounts { keys, expires }))
        .collect();
    let libraries = crate::logical::function_libraries(&mut client).await?.len() as u64;
    Ok((counts, libraries))
}

/// A redis-server on a scratch directory, killed when dropped.
struct ScratchServer {
    child: tokio::process::Child,
    port: u16,
}

impl ScratchServer {
    async fn start(dir: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free port", e))?
            .port();
        let log = dir.join("redis.log");
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::backend("redis", "backup", format!(
                    "cannot start redis-server for the test restore ({e}): apt-get install -y redis-server"
                ))
            })?;
        let server = ScratchServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return Ok(server);
            }
            if text.contains("# ") && (text.contains("Fatal") || text.contains("Bad file format"))
                || Instant::now() > deadline
            {
                return Err(Error::backend(
                    "redis",
                    "backup",
                    format!("the scratch redis-server did not load the backup: {text}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
