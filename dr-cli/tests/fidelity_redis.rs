//! The Redis fidelity suite from the command line: FORMAT.md's by-hand recovery (stock `jq`,
//! `age` and `zstd` give `dump.rdb`, `redis-server` loads it) followed literally, and
//! `dr restore` of RDB and logical backups into empty servers; each restored server's
//! fingerprint (redis-cli only) compared with the source's before the backup.

use std::path::Path;
use std::process::Command;

mod common;

use dr_testing::RedisServer;
use dr_testing::fidelity::redis::{
    EXPIRY_TOLERANCE_MS, assert_faithful_within, fingerprint_server,
};

fn config(work: &Path, port: u16, mode: &str) -> std::path::PathBuf {
    let config = work.join(format!("dr-{mode}.toml"));
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\nmode = \"{mode}\"\n",
            work.display()
        ),
    )
    .unwrap();
    config
}

/// The one backup directory of source `cache`.
fn backup_dir(work: &Path) -> std::path::PathBuf {
    let backups: Vec<_> = std::fs::read_dir(work.join("repo/backups/cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    backups.into_iter().next().unwrap()
}

#[test]
fn the_by_hand_recovery_of_format_md_gives_the_server_back() {
    let source = RedisServer::start();
    source.load_fidelity_corpus();
    let before = fingerprint_server(&source);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), source.port(), "rdb");
    common::ok(&config, &["keygen"]);
    common::ok(&config, &["init"]);
    common::ok(&config, &["backup", "cache"]);

    // FORMAT.md, "Recover the artifact `db` of that backup", with the artifact dump.rdb.
    let dir = backup_dir(work.path());
    let key = work.path().join("key.txt");
    let recipe = format!(
        "for p in $(jq -r '.artifacts[] | select(.name == \"dump.rdb\") | .parts | sort_by(.index) | .[].object' manifest.json); do\n  age -d -i {} \"$p\"\ndone | zstd -d > dump.rdb.restored",
        key.display()
    );
    let out = Command::new("sh")
        .args(["-ec", &recipe])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = tempfile::tempdir().unwrap();
    std::fs::rename(dir.join("dump.rdb.restored"), data.path().join("dump.rdb")).unwrap();
    let loaded = RedisServer::start_on(data, None);
    assert_faithful_within("by-hand recovery", &before, &fingerprint_server(&loaded), 0);
    assert_eq!(loaded.cli(&["FCALL", "myfunc", "0", "by hand"]), "by hand");
}

#[test]
fn dr_restore_of_rdb_and_logical_backups_gives_the_server_back() {
    let source = RedisServer::start();
    source.load_fidelity_corpus();
    let before = fingerprint_server(&source);
    for mode in ["rdb", "logical"] {
        let work = tempfile::tempdir().unwrap();
        let config = config(work.path(), source.port(), mode);
        common::ok(&config, &["keygen"]);
        common::ok(&config, &["init"]);
        common::ok(&config, &["backup", "cache"]);
        let target = RedisServer::start();
        let out = common::ok(&config, &["restore", "cache", "--server", &target.url()]);
        assert!(out.contains("2 Functions libraries"), "{mode}: {out}");
        assert_faithful_within(
            &format!("dr restore of a {mode} backup"),
            &before,
            &fingerprint_server(&target),
            EXPIRY_TOLERANCE_MS,
        );
        assert_eq!(target.cli(&["FCALL", "myfunc", "0", mode]), mode);
    }
}
