//! Memory stays bounded: the peak RSS of `dr backup` and `dr restore` of a large file does
//! not grow with its size (2 GiB by default, 10 GiB with `DR_LONG_TESTS=1`), and `dr prune`
//! over many backups (1,000 by default, 10,000 long) stays within a stated bound.

mod common;

use std::path::Path;
use std::time::Duration;

use common::ok;

fn long() -> bool {
    std::env::var_os("DR_LONG_TESTS").is_some()
}

/// Runs `dr ARGS` and returns the highest VmHWM (peak RSS) seen, in MiB.
fn peak_rss_mib(config: &Path, args: &[&str]) -> f64 {
    let mut child = common::spawn_quiet(config, args);
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let hwm = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "dr {args:?} failed");
            return peak_kib as f64 / 1024.0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("dr.toml");
    std::fs::write(
        &path,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[pipeline]\nthreads = 2\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    ok(&path, &["keygen"]);
    ok(&path, &["init"]);
    path
}

#[test]
fn backup_and_restore_memory_does_not_grow_with_size() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let size: u64 = if long() { 10 << 30 } else { 2 << 30 };
    // Sparse: no disk, but every byte is read, hashed, compressed and encrypted.
    std::fs::File::create(tree.join("disk.img"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let config = config(
        dir.path(),
        &format!(
            "[sources.tree]\nkind = \"directory\"\npath = \"{}\"\n",
            tree.display()
        ),
    );
    let backup = peak_rss_mib(&config, &["backup", "tree"]);
    let restored = dir.path().join("restored");
    let restore = peak_rss_mib(
        &config,
        &["restore", "tree", "--to", restored.to_str().unwrap()],
    );
    println!(
        "{} GiB: backup peak RSS {backup:.0} MiB, restore {restore:.0} MiB",
        size >> 30
    );
    // 16 MiB parts, 2 threads: bounded by parts in flight, not by the backup's size.
    assert!(backup < 400.0, "backup peak RSS {backup:.0} MiB");
    assert!(restore < 400.0, "restore peak RSS {restore:.0} MiB");
    assert_eq!(
        std::fs::metadata(restored.join("disk.img")).unwrap().len(),
        size
    );
}

#[test]
fn prune_of_many_backups_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let config = config(
        dir.path(),
        &format!(
            "[retention]\nkeep_last = 10\n[sources.app]\nkind = \"sqlite\"\npath = \"{}\"\n",
            db.display()
        ),
    );
    let count = if long() { 10_000 } else { 1_000 };
    make_backups(dir.path(), count);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&config, &["list", "--json"])).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        count,
        "every backup committed"
    );
    let plan = peak_rss_mib(&config, &["prune", "--dry-run"]);
    let prune = peak_rss_mib(&config, &["prune"]);
    println!("{count} backups: prune --dry-run peak RSS {plan:.0} MiB, prune {prune:.0} MiB");
    assert!(plan < 200.0 && prune < 200.0, "{plan:.0} / {prune:.0} MiB");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&config, &["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 10);
}

/// `count` committed backups of `app`, written through the library (much faster than
/// `count` processes).
fn make_backups(dir: &Path, count: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let identities = dr_core::Identities::from_file(&dir.join("key.txt")).unwrap();
        let repo = dr_storage::open_repository(dir.join("repo").to_str().unwrap(), &[])
            .await
            .unwrap()
            .with_identities(identities);
        let source = dr_testing::StreamSource { seed: 1, size: 100 };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (repo, source) = (repo.clone(), dr_testing::StreamSource { ..source });
            // Hundreds a second, 16 at once: ids drawn twice in one second are claimed
            // through their lease, so every one of these succeeds.
            tasks.spawn(async move {
                repo.backup("app", &source, &dr_core::BackupOptions::default())
                    .await
                    .unwrap()
            });
            while tasks.len() >= 16 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
    });
}
