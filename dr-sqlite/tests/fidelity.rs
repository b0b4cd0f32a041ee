//! The restored database is the database that was backed up: content, page size, journal
//! mode, user_version, application_id, owner, group, mode, and nothing stray beside it,
//! compared with the `sqlite3` CLI and `stat` (dr_testing::fidelity::sqlite). Also restores
//! over damaged files, and the refusal when a process holds the file.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{BackupOptions, Identities, PipelineOptions, Repository, Restore, RestoreOptions};
use dr_sqlite::{SqliteSource, SqliteTarget};
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::sqlite::{Journal, fingerprint_database, make_corpus, sqlite3};

struct Fixture {
    dir: tempfile::TempDir,
    repo: Repository,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("repo")).unwrap());
        let ids = Identities::generate();
        let repo = Repository::init(store, "local", &ids.to_recipients())
            .await
            .unwrap()
            .with_identities(ids)
            .with_pipeline(PipelineOptions::default().with_part_size(64 * 1024));
        Fixture { dir, repo }
    }

    /// `<tempdir>/<sub>/app.db`, its directory created.
    fn db_in(&self, sub: &str) -> PathBuf {
        let dir = self.dir.path().join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("app.db")
    }
}

/// A corpus owned by nobody:nogroup with mode 0640, as an application's database would be.
fn corpus(path: &Path, page_size: u32, journal: Journal) {
    make_corpus(path, page_size, journal);
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
}

/// A `sqlite3` process running `script`, killed (SIGKILL) once it printed `ready`: its
/// uncheckpointed WAL or hot journal stays beside the file, as after a crash.
fn crash_after(path: &Path, script: &str) {
    let mut child = Command::new("sqlite3")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{script}\nSELECT 'ready';").unwrap();
    read_line(&mut child);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn read_line(child: &mut Child) -> String {
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

async fn restore(
    fx: &Fixture,
    manifest: &dr_core::Manifest,
    target: &Path,
) -> dr_core::RestoreReport {
    SqliteTarget::new(target)
        .restore(
            &fx.repo.reader(manifest.clone()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap()
}

async fn faithful_in_every_mode(page_size: u32, journal: Journal) {
    let fx = Fixture::new().await;
    let db = fx.db_in("live");
    corpus(&db, page_size, journal);
    let source = fingerprint_database(&db);
    assert_eq!(source.get("owner"), Some("65534:65534"));
    assert_eq!(
        source.get("page_size"),
        Some(page_size.to_string().as_str())
    );
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    let mode = |m: &str| format!("page_size {page_size}, {journal:?}: {m}");
    assert_faithful(
        &mode("the source after its backup"),
        &source,
        &fingerprint_database(&db),
    );

    restore(&fx, &manifest, &db).await;
    assert_faithful(
        &mode("in place over the original"),
        &source,
        &fingerprint_database(&db),
    );

    // The application wrote on and crashed: a WAL with frames, or a hot journal, beside it.
    let late = match journal {
        Journal::Wal => {
            "PRAGMA wal_autocheckpoint = 0; INSERT INTO kv VALUES ('late', 1); PRAGMA user_version = 7;"
        }
        Journal::Delete => {
            "INSERT INTO kv VALUES ('late', 1); PRAGMA user_version = 7; PRAGMA cache_size = 2; BEGIN; DELETE FROM items;"
        }
    };
    crash_after(&db, late);
    let sidecar = match journal {
        Journal::Wal => "-wal",
        Journal::Delete => "-journal",
    };
    assert!(
        dr_core::sibling_path(&db, sidecar).exists(),
        "the crash left {sidecar}"
    );
    let report = restore(&fx, &manifest, &db).await;
    assert_faithful(
        &mode("in place over a modified, crashed file"),
        &source,
        &fingerprint_database(&db),
    );
    let kept = PathBuf::from(report.previous_kept_at.unwrap());
    assert_eq!(
        sqlite3(&kept, &["SELECT count(*) FROM kv WHERE k = 'late'"]),
        "1",
        "the replaced file, kept with its {sidecar}, still has the later write"
    );

    let elsewhere = fx.dir.path().join("new/deeper/app.db");
    let report = restore(&fx, &manifest, &elsewhere).await;
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_faithful(
        &mode("to a new path"),
        &source,
        &fingerprint_database(&elsewhere),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_database_is_restored_faithfully() {
    faithful_in_every_mode(8192, Journal::Wal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_journal_database_is_restored_faithfully() {
    faithful_in_every_mode(1024, Journal::Delete).await;
}

/// Damages `db` as `how` says, restores over it in place (no --force) and compares.
async fn restore_over_damage(how: &str) {
    let fx = Fixture::new().await;
    let db = fx.db_in("live");
    corpus(&db, 4096, Journal::Delete);
    let source = fingerprint_database(&db);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    match how {
        "header" => bytes[..100].copy_from_slice(&[0x5a; 100]),
        _ => {
            // Page 2 onwards: b-tree pages of the schema's tables, overwritten with garbage.
            for b in &mut bytes[4096..4096 * 6] {
                *b = 0xa5;
            }
        }
    }
    std::fs::write(&db, &bytes).unwrap();
    let (code, stderr) = {
        let out = Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA integrity_check")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let expected = if how == "header" {
        "file is not a database"
    } else {
        "malformed"
    };
    assert!(
        stderr.contains(expected) || (code == Some(0) && !stderr.trim().ends_with("ok")),
        "the damage is what SQLite reports as {expected}: {stderr}"
    );
    let report = restore(&fx, &manifest, &db).await;
    assert_faithful(
        &format!("in place over a damaged file ({how})"),
        &source,
        &fingerprint_database(&db),
    );
    let kept = report.previous_kept_at.unwrap();
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        bytes,
        "the damaged file is kept as it was"
    );
    if how == "header" {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("was not a SQLite database")),
            "{:?}",
            report.notes
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_a_file_with_a_destroyed_header() {
    restore_over_damage("header").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_a_corrupt_database() {
    restore_over_damage("btree").await;
}

/// A process holding the file (or its -wal) open, even a damaged one: refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_while_a_process_holds_the_file_naming_it() {
    let fx = Fixture::new().await;
    let db = fx.db_in("live");
    corpus(&db, 4096, Journal::Wal);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    std::fs::write(&db, b"garbage, not a database").unwrap();
    for held in [db.clone(), dr_core::sibling_path(&db, "-wal")] {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&held)
            .unwrap();
        let mut sleeper = Command::new("sleep")
            .arg("60")
            .stdin(std::fs::File::open(&held).unwrap())
            .spawn()
            .unwrap();
        // `sleep` has the file open once its exec is done.
        let fd0 = format!("/proc/{}/fd/0", sleeper.id());
        while std::fs::read_link(&fd0).ok() != Some(held.clone()) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let before = std::fs::read(&db).unwrap();
        let err = SqliteTarget::new(&db)
            .restore(
                &fx.repo.reader(manifest.clone()),
                &RestoreOptions::default(),
            )
            .await
            .unwrap_err();
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "in use (process {} (sleep) has it open)",
                sleeper.id()
            )),
            "{message}"
        );
        assert!(message.contains("stop the application first"), "{message}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "target untouched");
    }
}

/// Leftovers of another database beside a target that does not exist (restore `--to` a new
/// path, or in place after the file itself was deleted): a stray `-wal` must never be
/// replayed into the restored file, and a source path that is a symbolic link is restored
/// where it points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_sidecars_and_symlinked_paths_do_not_change_the_restored_database() {
    let fx = Fixture::new().await;
    let db = fx.db_in("live");
    corpus(&db, 4096, Journal::Wal);
    let source = fingerprint_database(&db);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();

    // A foreign WAL (from another database) beside the new path.
    let foreign = fx.db_in("foreign");
    sqlite3(&foreign, &["PRAGMA journal_mode=WAL;"]);
    crash_after(
        &foreign,
        "PRAGMA wal_autocheckpoint=0; CREATE TABLE evil (x); INSERT INTO evil VALUES (1);",
    );
    let new_path = fx.db_in("new");
    for suffix in ["-wal", "-shm"] {
        let from = dr_core::sibling_path(&foreign, suffix);
        if from.exists() {
            std::fs::copy(&from, dr_core::sibling_path(&new_path, suffix)).unwrap();
        }
    }
    assert!(dr_core::sibling_path(&new_path, "-wal").exists());
    let report = restore(&fx, &manifest, &new_path).await;
    // The note names the leftover as the operator saw it (`new.db-wal`), then where it went.
    let leftover = format!(
        "{} was beside the missing database",
        dr_core::sibling_path(&new_path, "-wal")
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    assert!(
        report.notes.iter().any(|n| n.starts_with(&leftover)),
        "{leftover:?} in {:?}",
        report.notes
    );
    assert_faithful(
        "to a new path beside a stray -wal",
        &source.without(&["owner", "mode", "beside"]),
        &fingerprint_database(&new_path).without(&["owner", "mode", "beside"]),
    );
    assert!(!dr_core::sibling_path(&new_path, "-wal").exists());

    // In place after the database file was deleted, its -wal left behind.
    crash_after(
        &db,
        "PRAGMA wal_autocheckpoint=0; INSERT INTO audit (what) VALUES ('late');",
    );
    assert!(dr_core::sibling_path(&db, "-wal").exists());
    std::fs::remove_file(&db).unwrap();
    restore(&fx, &manifest, &db).await;
    assert_faithful(
        "in place after the file was deleted",
        &source,
        &fingerprint_database(&db),
    );

    // The configured path is a symbolic link to the database.
    let real = fx.db_in("linked").with_file_name("real.db");
    std::fs::copy(&db, &real).unwrap();
    std::os::unix::fs::chown(&real, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let link = real.with_file_name("app.db");
    std::os::unix::fs::symlink("real.db", &link).unwrap();
    sqlite3(
        &real,
        &["INSERT INTO audit (what) VALUES ('after the backup');"],
    );
    restore(&fx, &manifest, &link).await;
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_faithful(
        "through a symbolic link",
        &source.without(&["beside"]),
        &fingerprint_database(&real).without(&["beside"]),
    );
}
