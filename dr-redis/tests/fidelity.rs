//! The fidelity suite for Redis: an awkward corpus (every type, binary and empty key names,
//! a 1.6 MB string, a stream with consumer groups and pending entries, four databases, TTLs
//! in ms and far in the future, Functions libraries) fingerprinted with redis-cli before the
//! backup, then restored in every mode and compared: RDB as the file a fresh server loads,
//! RDB replayed into an empty server and with --force over existing keys, logical replayed
//! into an empty server and with --force. Plus: expiry times are absolute (keys expired since
//! the backup are skipped and counted) and the restored dump.rdb keeps the replaced file's
//! owner and mode.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use dr_core::{BackupOptions, Identities, Manifest, Repository, Restore, RestoreOptions};
use dr_redis::{RedisConnection, RedisFileTarget, RedisMode, RedisReplayTarget, RedisSource};
use dr_testing::RedisServer;
use dr_testing::fidelity::redis::{
    EXPIRY_TOLERANCE_MS, assert_faithful_within, fingerprint_file, fingerprint_server,
};

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://test", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn conn(server: &RedisServer) -> RedisConnection {
    RedisConnection::from_url(&server.url()).unwrap()
}

async fn backup(repo: &Repository, server: &RedisServer, mode: RedisMode) -> Manifest {
    let source = RedisSource::new(conn(server)).with_mode(mode);
    repo.backup("cache", &source, &BackupOptions::default())
        .await
        .unwrap()
}

async fn replay(
    repo: &Repository,
    manifest: &Manifest,
    target: &RedisServer,
    force: bool,
) -> String {
    let mut opts = RestoreOptions::default();
    opts.force = force;
    RedisReplayTarget::new(conn(target))
        .with_safety_backup(repo.clone(), "cache-target")
        .restore(&repo.reader(manifest.clone()), &opts)
        .await
        .unwrap()
        .target
}

/// Keys of the corpus's names with other types, values and TTLs, and another `mylib`.
fn occupy(server: &RedisServer) {
    server.cli(&["RPUSH", "string", "not", "a", "string"]);
    server.cli(&["SET", "big", "small", "EX", "100"]);
    server.cli(&["SET", "ttl:far", "no expiry here"]);
    server.cli(&["-n", "2", "SET", "k2", "old"]);
    server.cli(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return 'old' end)",
    ]);
}

fn functions_work(mode: &str, server: &RedisServer) {
    assert_eq!(
        server.cli(&["FCALL", "myfunc", "0", "hello"]),
        "hello",
        "{mode}"
    );
    assert_eq!(
        server.cli(&["FCALL_RO", "peek", "1", "string"]),
        "hello",
        "{mode}"
    );
}

#[tokio::test]
async fn every_restore_mode_gives_back_the_server_that_was_backed_up() {
    let source = RedisServer::start();
    source.load_fidelity_corpus();
    let before = fingerprint_server(&source);
    assert!(before.get("functions").unwrap().contains("mylib"));
    assert!(before.get("streams.db0").unwrap().contains("carol"));
    assert!(
        before
            .get("expiry.db0")
            .unwrap()
            .contains(" 32503680000123")
    );
    let repo = repository().await;
    let rdb = backup(&repo, &source, RedisMode::Rdb).await;
    let logical = backup(&repo, &source, RedisMode::Logical).await;
    assert_eq!(logical.source_info["functions"], 2);
    assert_eq!(rdb.source_info["rdb"]["functions"], 2);
    assert_faithful_within(
        "the source after its backups",
        &before,
        &fingerprint_server(&source),
        0,
    );

    // The RDB as the dump.rdb of a fresh server directory.
    let dir = tempfile::tempdir().unwrap();
    RedisFileTarget::new(dir.path().join("dump.rdb"))
        .restore(&repo.reader(rdb.clone()), &RestoreOptions::default())
        .await
        .unwrap();
    let loaded = RedisServer::start_on(dir, None);
    let mode = "RDB file restore";
    assert_faithful_within(
        mode,
        &before,
        &fingerprint_server(&loaded),
        EXPIRY_TOLERANCE_MS,
    );
    functions_work(mode, &loaded);

    for (mode, manifest, force) in [
        ("RDB replay into an empty server", &rdb, false),
        ("RDB replay with --force over existing keys", &rdb, true),
        ("logical replay into an empty server", &logical, false),
        (
            "logical replay with --force over existing keys",
            &logical,
            true,
        ),
    ] {
        let target = RedisServer::start();
        if force {
            occupy(&target);
        }
        let report = replay(&repo, manifest, &target, force).await;
        assert!(report.contains("2 Functions libraries"), "{mode}: {report}");
        assert_faithful_within(
            mode,
            &before,
            &fingerprint_server(&target),
            EXPIRY_TOLERANCE_MS,
        );
        functions_work(mode, &target);
    }
}

#[tokio::test]
async fn expiry_times_are_absolute_and_keys_expired_since_the_backup_are_counted() {
    let source = RedisServer::start();
    source.cli(&["SET", "soon", "v", "PX", "1500"]);
    source.cli(&["SET", "later", "v", "PX", "600000"]);
    source.cli(&["-n", "1", "SET", "forever", "v"]);
    let later_at: i64 = source.cli(&["PEXPIRETIME", "later"]).parse().unwrap();
    let repo = repository().await;
    let rdb = backup(&repo, &source, RedisMode::Rdb).await;
    let logical = backup(&repo, &source, RedisMode::Logical).await;
    // Past the expiry of `soon`, and long enough that a restarted TTL would show.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for (mode, manifest) in [("RDB replay", &rdb), ("logical replay", &logical)] {
        let target = RedisServer::start();
        let report = replay(&repo, manifest, &target, false).await;
        assert!(
            report.contains("2 keys")
                && report.contains("1 key had expired since the backup and was not restored"),
            "{mode}: {report}"
        );
        assert_eq!(target.cli(&["EXISTS", "soon"]), "0", "{mode}");
        let at: i64 = target.cli(&["PEXPIRETIME", "later"]).parse().unwrap();
        assert_eq!(
            at,
            later_at,
            "{mode}: the expiry time moved by {} ms",
            at - later_at
        );
        assert_eq!(target.cli(&["-n", "1", "PTTL", "forever"]), "-1", "{mode}");
    }
    // The file restore: the server drops the expired key itself when it loads the file.
    let dir = tempfile::tempdir().unwrap();
    RedisFileTarget::new(dir.path().join("dump.rdb"))
        .restore(&repo.reader(rdb), &RestoreOptions::default())
        .await
        .unwrap();
    let loaded = RedisServer::start_on(dir, None);
    assert_eq!(loaded.cli(&["EXISTS", "soon", "later"]), "1");
    assert_eq!(loaded.cli(&["PEXPIRETIME", "later"]), later_at.to_string());
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

#[tokio::test]
async fn the_restored_dump_rdb_keeps_the_owner_and_mode_of_the_file_it_replaces() {
    let source = RedisServer::start();
    source.cli(&["SET", "a", "1"]);
    source.cli(&["FUNCTION", "LOAD", dr_testing::redis::MYLIB]);
    let repo = repository().await;
    let rdb = backup(&repo, &source, RedisMode::Rdb).await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"previous").unwrap();
    chown(&target, 65534, 65534);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let attributes = fingerprint_file(&target);
    assert_eq!(attributes.get("file.owner"), Some("65534:65534"));
    // A killed restore's staged file is cleaned up by the next one.
    let leftover = dir.path().join(".dump.rdb.dr-restore-999999999-0badf00d");
    std::fs::write(&leftover, b"half").unwrap();

    let file_target = RedisFileTarget::new(&target);
    let mut kept = Vec::new();
    for _ in 0..2 {
        let report = file_target
            .restore(&repo.reader(rdb.clone()), &RestoreOptions::default())
            .await
            .unwrap();
        kept.push(report.previous_kept_at.unwrap());
        dr_testing::fidelity::assert_faithful(
            "RDB file restore",
            &attributes,
            &fingerprint_file(&target),
        );
    }
    // Two restores in the same second keep both previous files under different names.
    assert_ne!(kept[0], kept[1]);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), b"previous");
    assert_eq!(
        std::fs::read(&kept[1]).unwrap(),
        std::fs::read(&target).unwrap()
    );
    assert!(
        !leftover.exists(),
        "the killed restore's staged file is still there"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // No file to replace: the directory's owner, mode 0600 (as root).
    let fresh = tempfile::tempdir().unwrap();
    chown(fresh.path(), 65534, 65534);
    let target = fresh.path().join("dump.rdb");
    RedisFileTarget::new(&target)
        .restore(&repo.reader(rdb), &RestoreOptions::default())
        .await
        .unwrap();
    let got = fingerprint_file(&target);
    assert_eq!(got.get("file.owner"), Some("65534:65534"));
    assert_eq!(got.get("file.mode"), Some("600"));
    std::fs::set_permissions(fresh.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = fingerprint_server(&source);
    let loaded = RedisServer::start_on(fresh, None);
    assert_faithful_within("RDB file restore", &before, &fingerprint_server(&loaded), 0);
}

#[tokio::test]
async fn a_logical_backup_by_a_user_without_function_rights_says_the_libraries_are_not_in_it() {
    let source = RedisServer::start();
    source.cli(&["SET", "a", "1"]);
    source.cli(&["FUNCTION", "LOAD", dr_testing::redis::MYLIB]);
    source.cli(&[
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
        "-function",
    ]);
    let url = format!("redis://backup:pw@127.0.0.1:{}", source.port());
    let repo = repository().await;
    let logical =
        RedisSource::new(RedisConnection::from_url(&url).unwrap()).with_mode(RedisMode::Logical);
    let manifest = repo
        .backup("cache", &logical, &BackupOptions::default())
        .await
        .unwrap();
    let note = manifest.source_info["functions_not_backed_up"]
        .as_str()
        .unwrap();
    assert!(note.contains("NOPERM"), "{note}");
    assert_eq!(manifest.source_info["databases"]["0"]["keys"], 1);
}

/// The least-privilege ACL users the README's "Managed services" section gives: a logical
/// backup, an rdb backup and a `--server` restore with exactly those commands bring back the
/// whole corpus (every database, TTLs, Functions libraries).
#[tokio::test]
async fn the_readme_acl_users_back_up_and_restore_everything() {
    const LOGICAL: &str = "+info +select +scan +dump +pttl +pexpiretime +time +function|list";
    const RDB: &str = "+info +replconf +psync +sync";
    const RESTORE: &str = "+info +select +time +restore +function|load";
    let acl = |server: &RedisServer, user: &str, rules: &str, keys: bool| {
        let mut args = vec!["ACL", "SETUSER", user, "on", ">pw"];
        if keys {
            args.push("~*");
        }
        args.extend(rules.split(' '));
        server.cli(&args);
    };
    let source = RedisServer::start();
    source.load_fidelity_corpus();
    acl(&source, "logical", LOGICAL, true);
    acl(&source, "rdb", RDB, false);
    let before = fingerprint_server(&source);
    let repo = repository().await;
    let as_user = |server: &RedisServer, user: &str| {
        RedisConnection::from_url(&format!("redis://{user}:pw@127.0.0.1:{}", server.port()))
            .unwrap()
    };
    let mut manifests = Vec::new();
    for (user, mode) in [("logical", RedisMode::Logical), ("rdb", RedisMode::Rdb)] {
        let source = RedisSource::new(as_user(&source, user)).with_mode(mode);
        let manifest = repo
            .backup("cache", &source, &BackupOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{user} backup: {e}"));
        assert!(
            !manifest.source_info.contains_key("functions_not_backed_up"),
            "{user}: {:?}",
            manifest.source_info
        );
        manifests.push((user, manifest));
    }
    for (user, manifest) in manifests {
        let target = RedisServer::start();
        acl(&target, "restorer", RESTORE, true);
        RedisReplayTarget::new(as_user(&target, "restorer"))
            .restore(&repo.reader(manifest), &RestoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("restore of the {user} backup: {e}"));
        assert_faithful_within(
            &format!("{user} backup replayed by the restore user"),
            &before,
            &fingerprint_server(&target),
            EXPIRY_TOLERANCE_MS,
        );
        functions_work(user, &target);
    }
}
