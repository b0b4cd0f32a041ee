//! Append-only backup hosts with the IAM policies of `examples/deploy/iam/`, enforced by a
//! real S3-compatible server (moto with IAM on) on 127.0.0.1: as the backup host (no
//! `s3:DeleteObject`) init, backups, copies and verify succeed and prune is refused with
//! nothing deleted; as the prune host the same prune succeeds.

use std::path::{Path, PathBuf};
use std::process::Command;

use dr_testing::S3Server;

mod common;

fn policy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/deploy/iam")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("BUCKET", "dr-test")
}

struct Host<'a> {
    dir: PathBuf,
    options: Vec<(&'static str, String)>,
    _s3: &'a S3Server,
}

impl Host<'_> {
    fn dr(&self, args: &[&str]) -> (i32, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env_remove("DR_REPOSITORY");
        for (name, value) in &self.options {
            command.env(name.to_uppercase(), value);
        }
        common::output_of(command)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.dr(args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    }

    fn count(&self, args: &[&str]) -> usize {
        let listed: serde_json::Value = serde_json::from_str(&self.ok(args)).unwrap();
        listed.as_array().unwrap().len()
    }
}

#[test]
fn the_backup_host_backs_up_and_copies_without_delete_rights_and_only_the_prune_host_prunes() {
    let backup_policy = policy("backup-host.json");
    let prune_policy = policy("prune-host.json");
    let (s3, keys) = S3Server::start_enforcing_iam(&[
        ("backup-host", &backup_policy),
        ("prune-host", &prune_policy),
    ]);
    let work = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(work.path().join("app.db")).unwrap();
    db.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('append only');")
        .unwrap();
    std::fs::write(
        work.path().join("dr.toml"),
        format!(
            "identity = \"./key.txt\"\nrepository = \"{}\"\ncopies = [\"{}\"]\n[retention]\nkeep_last = 1\n\n[sources.app]\nkind = \"sqlite\"\npath = \"./app.db\"\n",
            s3.url("repo"),
            s3.url("copy")
        ),
    )
    .unwrap();
    let host = |(id, secret): &(String, String)| Host {
        dir: work.path().to_owned(),
        options: s3.options_as(id, secret),
        _s3: &s3,
    };
    let (backup_host, prune_host) = (host(&keys[0]), host(&keys[1]));

    let (code, out) = backup_host.dr(&["list"]);
    assert_ne!(code, 0, "no repository yet: {out}");
    backup_host.ok(&["keygen"]);
    backup_host.ok(&["init"]);
    backup_host.ok(&["backup", "app"]);
    backup_host.ok(&["backup", "app", "--copy"]);
    backup_host.ok(&["copy"]);
    backup_host.ok(&["verify", "app"]);
    assert_eq!(backup_host.count(&["list", "--json", "app"]), 2);
    backup_host.ok(&["restore", "app", "--to", "restored.db"]);

    let (code, out) = backup_host.dr(&["prune"]);
    assert_ne!(code, 0, "the backup host has no delete rights: {out}");
    assert!(
        out.contains("AccessDenied") || out.contains("denied"),
        "{out}"
    );
    assert_eq!(
        backup_host.count(&["list", "--json", "app"]),
        2,
        "nothing deleted"
    );

    let out = prune_host.ok(&["prune"]);
    assert!(!out.is_empty());
    assert_eq!(prune_host.count(&["list", "--json", "app"]), 1);
    backup_host.ok(&["verify", "app"]);
}
