//! Snapshot of a live database through the online backup API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dr_core::{Backup, BackupWriter, Error, Result, SourceInfo, async_trait};
use rusqlite::backup::StepResult;
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use tokio::io::AsyncReadExt;

use crate::{DB_ARTIFACT, KIND, sibling, sqlite_error};

/// How to snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Record the exact row count of every table (a full scan; off for huge databases).
    pub count_rows: bool,
    /// Where the temporary snapshot goes (default: the system temp directory).
    pub temp_dir: Option<PathBuf>,
    /// Pages copied per backup step (between steps other connections may write).
    pub pages_per_step: i32,
    /// How the snapshot is taken.
    pub method: SnapshotMethod,
}

/// How a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMethod {
    /// In WAL mode, stream the database file itself while a read transaction pins it, when
    /// SQLite guarantees the file is the snapshot: the WAL is empty once the transaction began
    /// (dr first runs a `TRUNCATE` checkpoint, which changes no data; while the reader reads
    /// from the file alone, no checkpoint may write to it). WAL readers do not block writers,
    /// so snapshot and compression overlap with no temporary space; with frames left in the
    /// WAL, `BackupApi` is used.
    ///
    /// In rollback-journal mode a reader's shared lock blocks every commit, so the file is
    /// copied at disk speed into a temporary file under the read lock (the lock keeps writers
    /// out of the file: the copy is the snapshot) and the lock is released before the copy is
    /// compressed, encrypted and uploaded. Writers wait only for the local copy.
    #[default]
    Auto,
    /// Copy through SQLite's online backup API into a temporary file, then stream that.
    BackupApi,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            count_rows: true,
            temp_dir: None,
            pages_per_step: 16384,
            method: SnapshotMethod::Auto,
        }
    }
}

impl SqliteOptions {
    /// Records exact row counts (default) or not.
    pub fn with_count_rows(mut self, count: bool) -> Self {
        self.count_rows = count;
        self
    }

    /// Puts the temporary snapshot in `dir`.
    pub fn with_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }

    /// How the snapshot is taken.
    pub fn with_method(mut self, method: SnapshotMethod) -> Self {
        self.method = method;
        self
    }

    /// Pages copied per backup step (at least 1).
    pub fn with_pages_per_step(mut self, pages: i32) -> Self {
        self.pages_per_step = pages.max(1);
        self
    }
}

/// A SQLite database file to back up.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
    options: SqliteOptions,
}

impl SqliteSource {
    /// The database at `path`, with default options.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSource {
            path: path.into(),
            options: SqliteOptions::default(),
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: SqliteOptions) -> Self {
        self.options = options;
        self
    }
}

#[async_trait]
impl Backup for SqliteSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let (path, options) = (self.path.clone(), self.options.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = tokio::task::spawn_blocking(move || {
            hold_snapshot(&path, &options, ready_tx, release_rx)
        });
        let streamed = match ready_rx.await {
            Ok(Ok(snapshot)) => stream_snapshot(&self.path, snapshot, out).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::internal(
                "the SQLite snapshot",
                "the snapshot thread stopped before it was ready",
            )),
        };
        drop(release_tx); // lets the holder end its read transaction
        let held = holder
            .await
            .map_err(|e| Error::internal("the SQLite snapshot", e))?;
        let info = streamed?;
        held?;
        Ok(info)
    }
}

/// A snapshot ready to stream.
enum Snapshot {
    /// The database file itself, pinned by a read transaction, up to `len` bytes.
    Direct { len: u64, info: SourceInfo },
    /// A copy (removed when dropped).
    Copied {
        temp: tempfile::NamedTempFile,
        info: SourceInfo,
    },
}

async fn stream_snapshot(
    path: &Path,
    snapshot: Snapshot,
    out: &mut BackupWriter,
) -> Result<SourceInfo> {
    let (file_path, len, mut info, _temp) = match snapshot {
        Snapshot::Direct { len, info } => (path.to_owned(), len, info, None),
        Snapshot::Copied { temp, info } => {
            let len = temp
                .as_file()
                .metadata()
                .map_err(|e| Error::io("sizing the snapshot", e))?
                .len();
            (temp.path().to_owned(), len, info, Some(temp))
        }
    };
    let file = tokio::fs::File::open(&file_path)
        .await
        .map_err(|e| Error::io(format!("opening {}", file_path.display()), e))?;
    let record = out.put_artifact(DB_ARTIFACT, &mut file.take(len)).await?;
    if record.plain_size != len {
        return Err(Error::backend(
            "sqlite",
            "backup",
            format!(
                "{} ended after {} of {len} bytes while it was being read",
                file_path.display(),
                record.plain_size
            ),
        )
        .retryable());
    }
    info.insert("stored_database_bytes".into(), len.into());
    Ok(info)
    // `_temp` (a copied snapshot) is removed here, and on every early return above.
}

/// On a blocking thread: opens one read transaction, reads the facts, decides how to
/// snapshot, hands the snapshot over. A direct snapshot keeps the transaction open until
/// released; a copy ends it as soon as the copy is made (row counts are then read from the
/// copy, so in rollback-journal mode the full scans do not block writers either).
fn hold_snapshot(
    path: &Path,
    options: &SqliteOptions,
    ready: tokio::sync::oneshot::Sender<Result<Snapshot>>,
    release: std::sync::mpsc::Receiver<()>,
) -> Result<()> {
    let source = match open_in_read_transaction(path, options) {
        Ok(source) => source,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let prepared = take_snapshot(&source, path, options);
    if let Ok(Snapshot::Direct { .. }) = prepared {
        if ready.send(prepared).is_ok() {
            let _ = release.recv(); // returns when the streaming side is done (sender dropped)
        }
        return end_transaction(&source);
    }
    let ended = end_transaction(&source);
    drop(source);
    let prepared = prepared.and_then(|snapshot| {
        ended?;
        count_rows_of_copy(snapshot, options.count_rows)
    });
    let _ = ready.send(prepared);
    Ok(())
}

/// Under the open read transaction: the facts, then the direct snapshot or a copy.
fn take_snapshot(source: &Connection, path: &Path, options: &SqliteOptions) -> Result<Snapshot> {
    let started = Instant::now();
    let mut info = facts(source)?;
    info.extend(file_attributes(path)?);
    let wal = info.get("journal_mode").and_then(|v| v.as_str()) == Some("wal");
    let method = match options.method {
        SnapshotMethod::Auto if wal && wal_is_empty(path) => "direct",
        SnapshotMethod::Auto if !wal => "file_copy",
        _ => "backup_api",
    };
    info.insert("snapshot_method".into(), method.into());
    if method == "direct" {
        if options.count_rows {
            insert_row_counts(&mut info, source)?;
        }
        let len = page_bytes(&info);
        return Ok(Snapshot::Direct { len, info });
    }
    let temp = new_temp(options)?;
    if method == "file_copy" {
        copy_file(path, page_bytes(&info), temp.path())?;
    } else {
        copy_pages(source, temp.path(), options.pages_per_step)?;
    }
    let bytes = temp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    info.insert("temp_bytes".into(), bytes.into());
    info.insert(
        "snapshot_ms".into(),
        (started.elapsed().as_millis() as u64).into(),
    );
    Ok(Snapshot::Copied { temp, info })
}

/// Adds the row counts of a copied snapshot, read from the copy itself.
fn count_rows_of_copy(snapshot: Snapshot, count_rows: bool) -> Result<Snapshot> {
    let Snapshot::Copied { temp, mut info } = snapshot else {
        return Ok(snapshot);
    };
    if count_rows {
        let copy = crate::check::open_immutable(temp.path())?;
        insert_row_counts(&mut info, &copy)?;
    }
    Ok(Snapshot::Copied { temp, info })
}

/// The database file's owner, group and mode (`file_mode` in octal, as `chmod` takes it).
fn file_attributes(path: &Path) -> Result<SourceInfo> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("reading the attributes of {}", path.display()), e))?;
    let mut info = SourceInfo::new();
    info.insert("file_uid".into(), meta.uid().into());
    info.insert("file_gid".into(), meta.gid().into());
    info.insert(
        "file_mode".into(),
        format!("{:04o}", meta.mode() & 0o7777).into(),
    );
    Ok(info)
}

fn open_in_read_transaction(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::backend(
            "sqlite",
            "backup",
            format!("no SQLite database at {}", path.display()),
        ));
    }
    if options.method == SnapshotMethod::Auto {
        checkpoint_if_wal(path);
    }
    // Read-write, although it only reads: in WAL mode a read-only connection leaves the `-wal`
    // and `-shm` it created beside an idle database; a read-write one, the last to close,
    // removes them. Read-only when the file is not writable by this user.
    let source = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_else(|_| {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    })
    .map_err(|e| sqlite_error(&format!("opening {}", path.display()), e))?;
    source
        .busy_timeout(Duration::from_secs(30))
        .map_err(|e| sqlite_error("busy_timeout", e))?;
    // One read transaction for the facts and the copy: both see the same snapshot, and in
    // WAL mode writers go on without restarting the copy. The first read starts it.
    source
        .execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
        .map_err(|e| sqlite_error("starting the read transaction", e))?;
    Ok(source)
}

fn end_transaction(source: &Connection) -> Result<()> {
    source
        .execute_batch("COMMIT")
        .map_err(|e| sqlite_error("COMMIT", e))
}

/// Moves WAL frames into the database file and empties the WAL, if it can within 2 s.
/// Changes no data; on any failure the backup API path is used instead.
fn checkpoint_if_wal(path: &Path) {
    let wal = sibling(path, "-wal");
    if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0 {
        return;
    }
    let checkpoint =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).and_then(|db| {
            db.busy_timeout(Duration::from_secs(2))?;
            db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        });
    if let Err(e) = checkpoint {
        tracing::debug!(error = %e, "checkpoint before the snapshot failed; using the backup API");
    }
}

/// Checked after the read transaction began: an empty WAL means this reader reads the file
/// alone, and while it does no checkpoint may write to the file.
fn wal_is_empty(path: &Path) -> bool {
    std::fs::metadata(sibling(path, "-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
        == 0
}

fn page_bytes(info: &SourceInfo) -> u64 {
    let get = |k: &str| info.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    get("page_size") * get("page_count")
}

fn new_temp(options: &SqliteOptions) -> Result<tempfile::NamedTempFile> {
    match &options.temp_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("dr-sqlite-")
            .tempfile_in(dir),
        None => tempfile::Builder::new().prefix("dr-sqlite-").tempfile(),
    }
    .map_err(|e| Error::io("creating the temporary snapshot file", e))
}

/// Copies the first `len` bytes of the database file (in-kernel where it can:
/// `copy_file_range`). Only while a read transaction keeps writers out of the file.
fn copy_file(path: &Path, len: u64, target: &Path) -> Result<()> {
    let mut from = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?
        .take(len);
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(|e| Error::io("opening the temporary snapshot file", e))?;
    let copied = std::io::copy(&mut from, &mut to)
        .map_err(|e| Error::io("copying the database file to the temporary snapshot", e))?;
    if copied != len {
        return Err(Error::backend(
            "sqlite",
            "backup",
            format!(
                "{} has {copied} bytes, its header says {len}",
                path.display()
            ),
        )
        .retryable());
    }
    Ok(())
}

fn copy_pages(source: &Connection, target: &Path, pages_per_step: i32) -> Result<()> {
    let mut dest =
        Connection::open(target).map_err(|e| sqlite_error("opening the snapshot file", e))?;
    let backup = rusqlite::backup::Backup::new(source, &mut dest)
        .map_err(|e| sqlite_error("starting the backup", e))?;
    loop {
        match backup
            .step(pages_per_step)
            .map_err(|e| sqlite_error("copying pages", e))?
        {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => std::thread::sleep(Duration::from_millis(20)),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn facts(db: &Connection) -> Result<SourceInfo> {
    let pragma = |name: &str| -> Result<serde_json::Value> {
        db.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(value_to_json)
        .map_err(|e| sqlite_error(&format!("PRAGMA {name}"), e))
    };
    let mut info = SourceInfo::new();
    info.insert("sqlite_version".into(), rusqlite::version().into());
    for name in [
        "page_size",
        "page_count",
        "journal_mode",
        "user_version",
        "application_id",
        "auto_vacuum",
        "encoding",
    ] {
        info.insert(name.into(), pragma(name)?);
    }
    Ok(info)
}

fn insert_row_counts(info: &mut SourceInfo, db: &Connection) -> Result<()> {
    info.insert(
        "row_counts".into(),
        serde_json::to_value(row_counts(db)?).unwrap_or_default(),
    );
    Ok(())
}

/// Exact row counts of every table (not views, not SQLite's internal tables).
pub(crate) fn row_counts(db: &Connection) -> Result<BTreeMap<String, u64>> {
    let mut statement = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(|e| sqlite_error("listing tables", e))?;
    let names: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sqlite_error("listing tables", e))?;
    let mut counts = BTreeMap::new();
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let n: i64 = db
            .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                row.get(0)
            })
            .map_err(|e| sqlite_error(&format!("counting rows of {name}"), e))?;
        counts.insert(name, n.max(0) as u64);
    }
    Ok(counts)
}

fn value_to_json(value: rusqlite::types::Value) -> serde_json::Value {
    use rusqlite::types::Value;
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => i.into(),
        Value::Real(f) => f.into(),
        Value::Text(t) => t.into(),
        Value::Blob(b) => format!("{} bytes", b.len()).into(),
    }
}
