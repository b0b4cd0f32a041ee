//! Snapshot of a live database through the online backup API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dr_core::{Backup, BackupWriter, Error, Result, SourceInfo, async_trait};
use rusqlite::backup::StepResult;
use rusqlite::{Connection, OpenFlags};

use crate::{DB_ARTIFACT, KIND, sqlite_error};

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
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            count_rows: true,
            temp_dir: None,
            pages_per_step: 16384,
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
        let (snapshot, mut info) = tokio::task::spawn_blocking(move || snapshot(&path, &options))
            .await
            .map_err(|e| Error::Source(format!("snapshot task failed: {e}")))??;
        let mut file = tokio::fs::File::open(snapshot.path())
            .await
            .map_err(|e| Error::io("opening the snapshot", e))?;
        let record = out.put_artifact(DB_ARTIFACT, &mut file).await?;
        info.insert("temp_bytes".into(), record.plain_size.into());
        Ok(info)
        // `snapshot` (a NamedTempFile) is removed here, and on every early return above.
    }
}

/// Copies a consistent snapshot into a temporary file; returns it with the facts.
fn snapshot(path: &Path, options: &SqliteOptions) -> Result<(tempfile::NamedTempFile, SourceInfo)> {
    if !path.is_file() {
        return Err(Error::Source(format!(
            "no SQLite database at {}",
            path.display()
        )));
    }
    let started = Instant::now();
    let source = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(&format!("opening {}", path.display()), e))?;
    source
        .busy_timeout(Duration::from_secs(30))
        .map_err(|e| sqlite_error("busy_timeout", e))?;
    // One read transaction for the facts and the copy: both see the same snapshot, and in
    // WAL mode writers go on without restarting the copy.
    source
        .execute_batch("BEGIN")
        .map_err(|e| sqlite_error("BEGIN", e))?;
    let mut info = facts(&source, options.count_rows)?;
    let temp = match &options.temp_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("dr-sqlite-")
            .tempfile_in(dir),
        None => tempfile::Builder::new().prefix("dr-sqlite-").tempfile(),
    }
    .map_err(|e| Error::io("creating the temporary snapshot file", e))?;
    copy_pages(&source, temp.path(), options.pages_per_step)?;
    source
        .execute_batch("COMMIT")
        .map_err(|e| sqlite_error("COMMIT", e))?;
    info.insert(
        "snapshot_ms".into(),
        (started.elapsed().as_millis() as u64).into(),
    );
    tracing::debug!(db = %path.display(), temp = %temp.path().display(), "snapshot taken");
    Ok((temp, info))
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

fn facts(db: &Connection, count_rows: bool) -> Result<SourceInfo> {
    let pragma = |name: &str| -> Result<serde_json::Value> {
        db.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(value_to_json)
        .map_err(|e| sqlite_error(&format!("PRAGMA {name}"), e))
    };
    let mut info = SourceInfo::new();
    info.insert("sqlite_version".into(), rusqlite::version().into());
    for name in ["page_size", "page_count", "journal_mode", "user_version"] {
        info.insert(name.into(), pragma(name)?);
    }
    if count_rows {
        info.insert(
            "row_counts".into(),
            serde_json::to_value(row_counts(db)?).unwrap_or_default(),
        );
    }
    Ok(info)
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
