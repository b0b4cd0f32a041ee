//! The backup and restore operations with hooks, over a tiny custom kind: a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::object_store::memory::InMemory;
use dr_core::ops::backup::{BackupRunOptions, backup};
use dr_core::ops::hooks::{HealthCheck, HookCommand};
use dr_core::ops::restore::{PointRestoreOptions, RestoreRunOptions, restore, restore_point};
use dr_core::ops::{ConfiguredSource, Group, Hooks, System};
use dr_core::registry::{RestoreRequest, Source};
use dr_core::{
    Backup, BackupWriter, Error, Identities, PointSelector, ProgressHandle, Registry, Repository,
    RestoreReport, Result, SourceInfo, Verify, async_trait,
};
use tokio::io::AsyncReadExt;

/// A file backed up as one artifact; restores write it back (or fail when told to).
struct FileSource {
    path: PathBuf,
    fail: bool,
}

struct FileBackup(PathBuf, bool);

#[async_trait]
impl Backup for FileBackup {
    fn kind(&self) -> &'static str {
        "test.file"
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        if self.1 {
            return Err(Error::backend(
                "source",
                "backup",
                "the test source refuses",
            ));
        }
        let bytes = std::fs::read(&self.0).map_err(|e| Error::io("reading the test source", e))?;
        out.put_artifact("data", &mut &bytes[..]).await?;
        Ok(SourceInfo::new())
    }
}

#[async_trait]
impl Source for FileSource {
    fn kind(&self) -> &str {
        "test.file"
    }
    async fn backup(&self, _: &Repository, _: &str, _: bool) -> Result<Box<dyn Backup>> {
        Ok(Box::new(FileBackup(self.path.clone(), self.fail)))
    }
    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        if self.fail {
            return Err(Error::restore("source", "the test target refuses"));
        }
        let reader = request.open().await?;
        let mut bytes = Vec::new();
        reader
            .artifact("data")?
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::restore("source", e.to_string()))?;
        let target = request.options.target.clone().unwrap_or(self.path.clone());
        std::fs::write(&target, &bytes).map_err(|e| Error::restore("source", e.to_string()))?;
        let mut report = RestoreReport::default();
        report.backup_id = reader.id().to_owned();
        report.target = target.display().to_string();
        report.restored_bytes = bytes.len() as u64;
        Ok(report)
    }
    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Err(Error::Usage("not needed here".into()))
    }
}

fn sh(script: String) -> HookCommand {
    HookCommand::new(["sh".to_owned(), "-c".to_owned(), script])
}

/// `echo "$tag $DR_SOURCE $DR_BACKUP_ID $DR_POINT" >> log`.
fn log_hook(log: &Path, tag: &str) -> HookCommand {
    sh(format!(
        "echo \"{tag} ${{DR_SOURCE:-}} ${{DR_BACKUP_ID:-}} ${{DR_POINT:-}}\" >> {}",
        log.display()
    ))
}

fn source(name: &str, path: &Path, fail: bool, hooks: Hooks) -> ConfiguredSource {
    let file = FileSource {
        path: path.to_owned(),
        fail,
    };
    ConfiguredSource::new(name, Arc::new(file)).with_hooks(hooks)
}

async fn repo() -> Repository {
    let ids = Identities::generate();
    Repository::init(Arc::new(InMemory::new()), "memory://", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn a_failing_before_restore_hook_leaves_the_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("db"), dir.path().join("log"));
    std::fs::write(&db, "v1").unwrap();
    let hooks = Hooks::default()
        .with_before_restore(sh("exit 3".into()))
        .with_after_restore(log_hook(&log, "after"));
    let system = System::new(Registry::new()).with_source(source("db", &db, false, hooks));
    let repo = repo().await;
    let made = backup(
        &repo,
        &system,
        &BackupRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    assert!(made.is_success());
    std::fs::write(&db, "v2").unwrap();
    let err = restore(
        &repo,
        &system,
        &RestoreRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::HookFailed {
                phase: "before_restore",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(read(&db), "v2", "the target was changed");
    // The after hook runs all the same (it starts what the before hooks stopped).
    assert!(read(&log).starts_with("after db "), "{}", read(&log));
}

#[tokio::test]
async fn after_restore_hooks_run_after_a_failed_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("db"), dir.path().join("log"));
    std::fs::write(&db, "v1").unwrap();
    let repo = repo().await;
    let good = System::new(Registry::new()).with_source(source("db", &db, false, Hooks::default()));
    let made = backup(
        &repo,
        &good,
        &BackupRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    let id = made.sources[0].id.clone().unwrap();
    let hooks = Hooks::default().with_after_restore(log_hook(&log, "after"));
    let failing = System::new(Registry::new()).with_source(source("db", &db, true, hooks));
    let report = restore(
        &repo,
        &failing,
        &RestoreRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    assert!(!report.is_success());
    assert!(report.error.as_deref().unwrap().contains("refuses"));
    assert_eq!(report.rto_ms, None);
    assert_eq!(read(&log).trim(), format!("after db {id}"));
}

#[tokio::test]
async fn the_rto_runs_until_the_health_check_passed() {
    let dir = tempfile::tempdir().unwrap();
    let (db, count) = (dir.path().join("db"), dir.path().join("n"));
    std::fs::write(&db, "v1").unwrap();
    let script = format!(
        "n=$(cat {f} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {f}; [ $n -ge 3 ]",
        f = count.display()
    );
    let health = HealthCheck::new(["sh".to_owned(), "-c".to_owned(), script])
        .with_interval(std::time::Duration::from_millis(150));
    let hooks = Hooks::default().with_health(health);
    let system = System::new(Registry::new()).with_source(source("db", &db, false, hooks));
    let repo = repo().await;
    backup(
        &repo,
        &system,
        &BackupRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    std::fs::write(&db, "v2").unwrap();
    let report = restore(
        &repo,
        &system,
        &RestoreRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(read(&db), "v1");
    assert_eq!(report.health.as_ref().unwrap().attempts, 3);
    assert!(report.rto_ms.unwrap() >= 300, "{report:?}");
}

#[tokio::test]
async fn a_restore_without_a_key_that_decrypts_is_refused_before_any_hook() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("db"), dir.path().join("log"));
    std::fs::write(&db, "v1").unwrap();
    let hooks = Hooks::default().with_before_restore(log_hook(&log, "before"));
    let system = System::new(Registry::new()).with_source(source("db", &db, false, hooks));
    let repo = repo().await;
    backup(
        &repo,
        &system,
        &BackupRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    let wrong_key = repo.clone().with_identities(Identities::generate());
    let err = restore(
        &wrong_key,
        &system,
        &RestoreRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoMatchingIdentity { .. }), "{err}");
    assert!(
        !log.exists(),
        "no hook ran for a key that cannot decrypt the backup"
    );
    let keyless = repo.with_identities(Identities::default());
    let err = restore(
        &keyless,
        &system,
        &RestoreRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoIdentity), "{err}");
    assert!(!log.exists());
}

#[tokio::test]
async fn a_failing_before_backup_hook_backs_nothing_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("db"), dir.path().join("log"));
    std::fs::write(&db, "v1").unwrap();
    let hooks = Hooks::default()
        .with_before_backup(sh("exit 1".into()))
        .with_after_backup(log_hook(&log, "after"));
    let system = System::new(Registry::new()).with_source(source("db", &db, false, hooks));
    let repo = repo().await;
    let report = backup(
        &repo,
        &system,
        &BackupRunOptions::source("db"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    assert!(!report.is_success());
    assert!(
        report.sources[0]
            .error
            .as_deref()
            .unwrap()
            .contains("before_backup hook")
    );
    assert!(repo.list(None).await.unwrap().backups.is_empty());
    assert!(read(&log).starts_with("after db"));
}

#[tokio::test]
async fn a_group_backs_up_every_source_and_its_point_restores_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let files: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dir.path().join(n)).collect();
    for f in &files {
        std::fs::write(f, "v1").unwrap();
    }
    let member = |name: &str, i: usize, fail: bool| {
        let hooks = Hooks::default().with_after_restore(log_hook(&log, "restored"));
        source(name, &files[i], fail, hooks)
    };
    let group_hooks = Hooks::default()
        .with_after_backup(log_hook(&log, "group-backup"))
        .with_before_restore(log_hook(&log, "group-before"))
        .with_after_restore(log_hook(&log, "group-after"));
    let group = Group::new(vec!["c".into(), "b".into(), "a".into()]).with_hooks(group_hooks);
    let with_failure = System::new(Registry::new())
        .with_source(member("a", 0, false))
        .with_source(member("b", 1, true))
        .with_source(member("c", 2, false))
        .with_group("sys", group.clone());
    let repo = repo().await;
    let report = backup(
        &repo,
        &with_failure,
        &BackupRunOptions::group("sys"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.sources.len(), 3, "every source attempted");
    let point = report.point.clone().unwrap();
    assert!(!point.is_complete());
    assert_eq!(point.failed[0].source, "b");
    assert_eq!(point.members.len(), 2);
    assert!(
        read(&log).contains(&format!("group-backup   {}", point.id)),
        "{}",
        read(&log)
    );
    // An incomplete point is refused unless allowed.
    let options = PointRestoreOptions::point(PointSelector::Id(point.id.clone()));
    let err = restore_point(&repo, &with_failure, &options, &ProgressHandle::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");

    let healthy = System::new(Registry::new())
        .with_source(member("a", 0, false))
        .with_source(member("b", 1, false))
        .with_source(member("c", 2, false))
        .with_group("sys", group);
    let full = backup(
        &repo,
        &healthy,
        &BackupRunOptions::group("sys"),
        &ProgressHandle::default(),
    )
    .await
    .unwrap();
    assert!(full.is_success());
    for f in &files {
        std::fs::write(f, "v2").unwrap();
    }
    std::fs::write(&log, "").unwrap();
    let latest = PointRestoreOptions::point(PointSelector::Latest);
    let restored = restore_point(&repo, &healthy, &latest, &ProgressHandle::default())
        .await
        .unwrap();
    assert!(restored.is_success(), "{restored:?}");
    assert!(restored.rto_ms.is_some());
    for f in &files {
        assert_eq!(read(f), "v1");
    }
    let lines: Vec<String> = read(&log)
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "group-before ",
            "restored c",
            "restored b",
            "restored a",
            "group-after "
        ]
    );
}
