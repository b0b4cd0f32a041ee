//! SQLite through the `dr` binary: FORMAT.md's by-hand recovery (stock age, zstd, jq) gives
//! back the database that was backed up, owner and mode included; restores over a damaged
//! file, refused while a process holds it, to a new path as a non-root user.

use std::path::{Path, PathBuf};
use std::process::Command;

use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::sqlite::{Journal, fingerprint_database, make_corpus};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A configuration with one SQLite source `app` at `live/app.db` (built by the caller),
    /// a key and an initialised repository.
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("live")).unwrap();
        let config = "repository = \"./repo\"\nidentity = \"./key.txt\"\n\n\
                      [sources.app]\nkind = \"sqlite\"\npath = \"./live/app.db\"\n";
        std::fs::write(dir.path().join("dr.toml"), config).unwrap();
        let ws = Workspace { dir };
        ws.ok(&["keygen"]);
        ws.ok(&["init"]);
        ws
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn dr(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_dr"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DR_REPOSITORY")
            .env_remove("DR_IDENTITY")
            .env_remove("DR_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.dr(args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    }

    /// The directory of the only backup of `app`.
    fn backup_dir(&self) -> PathBuf {
        let dirs: Vec<_> = std::fs::read_dir(self.path("repo/backups/app"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    }
}

fn corpus(db: &Path, uid: u32, mode: u32) {
    make_corpus(db, 8192, Journal::Wal);
    std::os::unix::fs::chown(db, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(db, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The body of the first ```sh block after the line containing `marker` in FORMAT.md.
fn format_md_block(marker: &str) -> String {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../FORMAT.md")).unwrap();
    let after = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("FORMAT.md lost {marker:?}"))..];
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let end = after[start..].find("```").unwrap();
    after[start..start + end].to_owned()
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn format_md_by_hand_recovery_gives_back_the_sqlite_database() {
    let ws = Workspace::new();
    let db = ws.path("live/app.db");
    corpus(&db, 65534, 0o640);
    let source = fingerprint_database(&db);
    ws.ok(&["backup", "app"]);
    let backup = ws.backup_dir();
    let key = ws.path("key.txt");

    // The recipe, literally: its `cd` line is where we already are, the key is ours.
    let recover = format_md_block("Recover the artifact `db` of that backup into `db.restored`:")
        .lines()
        .filter(|l| !l.starts_with("cd "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("/path/to/key.txt", key.to_str().unwrap());
    sh(&backup, &recover);
    let recovered = ws.path("recovered/app.db");
    std::fs::create_dir(ws.path("recovered")).unwrap();
    std::fs::rename(backup.join("db.restored"), &recovered).unwrap();
    let attributes = format_md_block("A SQLite backup (`kind` `sqlite`)")
        .replace("/path/to/app.db", recovered.to_str().unwrap());
    sh(&backup, &attributes);
    assert_faithful(
        "recovered by hand as FORMAT.md says",
        &source,
        &fingerprint_database(&recovered),
    );
}

#[test]
fn cli_restores_over_a_damaged_file_and_refuses_while_it_is_held() {
    let ws = Workspace::new();
    let db = ws.path("live/app.db");
    corpus(&db, 65534, 0o640);
    let source = fingerprint_database(&db);
    ws.ok(&["backup", "app"]);
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..100].fill(0);
    std::fs::write(&db, &bytes).unwrap();

    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdin(std::fs::File::open(&db).unwrap())
        .spawn()
        .unwrap();
    let fd0 = format!("/proc/{}/fd/0", sleeper.id());
    while std::fs::read_link(&fd0).ok() != Some(db.clone()) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (code, out) = ws.dr(&["restore", "app"]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "in use (process {} (sleep) has it open)",
            sleeper.id()
        )),
        "{out}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "target untouched");

    let out = ws.ok(&["restore", "app"]);
    assert!(
        out.contains("note: ") && out.contains("was not a SQLite database"),
        "{out}"
    );
    assert_faithful(
        "dr restore over a destroyed header",
        &source,
        &fingerprint_database(&db),
    );
}

/// A restore to a new path by a user who is not root and not the file's owner: the file is
/// the restoring user's (like `cp`), with the recorded mode, and the output says so.
#[test]
fn non_root_restore_to_a_new_path_says_it_could_not_give_the_owner() {
    let ws = Workspace::new();
    let db = ws.path("live/app.db");
    corpus(&db, 1000, 0o640);
    let source = fingerprint_database(&db);
    ws.ok(&["backup", "app"]);
    // Let nobody read the workspace, the key and the repository, and write `out/`.
    sh(
        ws.dir.path(),
        "chmod -R a+rX . && mkdir out && chown 65534:65534 out",
    );
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_dr")])
        .args(["restore", "app", "--to", "out/app.db"])
        .current_dir(ws.dir.path())
        .env_remove("DR_CONFIG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("is owned by 65534:65534 (the restoring user), not by 1000:1000"),
        "{text}"
    );
    let restored = fingerprint_database(&ws.path("out/app.db"));
    assert_eq!(restored.get("owner"), Some("65534:65534"));
    assert_faithful(
        "restore to a new path by nobody (owner documented not to carry)",
        &source.without(&["owner"]),
        &restored.without(&["owner"]),
    );
}
