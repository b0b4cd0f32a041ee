//! Restores onto a disk too small for them: a 1 MiB tmpfs (as root), else a 1 MiB file-size
//! limit (`ulimit -f`, writes past it fail with EFBIG as they would with ENOSPC). The restore
//! fails with the I/O error, the previous data is untouched and nothing staged is left.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ok;

/// A small filesystem mounted at `dir`, unmounted when dropped; `None` when mounting is not
/// allowed here.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs `dr ARGS` on a small disk: the tmpfs when there is one, else under `ulimit -f`.
fn dr_on_small_disk(config: &Path, args: &[&str], tmpfs: bool) -> (i32, String) {
    let command = if tmpfs {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dr"));
        c.arg("--config").arg(config).args(args);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_dr"))
            .arg("--config")
            .arg(config)
            .args(args);
        c
    };
    common::output_of(command)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn restores_onto_a_full_disk_fail_and_leave_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000) INSERT INTO t SELECT hex(randomblob(40)) FROM n;",
    )
    .unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("big.bin"), vec![7u8; 3 << 20]).unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n[sources.tree]\nkind = \"directory\"\npath = \"{0}/tree\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "--all"]);

    let small = dir.path().join("small");
    let tmpfs = Tmpfs::mount(&small);
    std::fs::create_dir_all(&small).unwrap();
    println!(
        "small disk: {}",
        if tmpfs.is_some() {
            "1 MiB tmpfs"
        } else {
            "ulimit -f"
        }
    );
    // What is there before: a small database file and a small tree.
    std::fs::write(small.join("app.db"), b"the previous database").unwrap();
    std::fs::create_dir_all(small.join("tree")).unwrap();
    std::fs::write(small.join("tree/old.txt"), b"the previous tree").unwrap();

    let target = small.join("app.db");
    let (code, out) = dr_on_small_disk(
        &config,
        &[
            "restore",
            "app",
            "--to",
            target.to_str().unwrap(),
            "--force",
        ],
        tmpfs.is_some(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("No space left on device") || out.contains("File too large"),
        "{out}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"the previous database");

    let target = small.join("tree");
    let (code, out) = dr_on_small_disk(
        &config,
        &["restore", "tree", "--to", target.to_str().unwrap()],
        tmpfs.is_some(),
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        std::fs::read(target.join("old.txt")).unwrap(),
        b"the previous tree"
    );
    assert_eq!(names(&target), ["old.txt"]);
    // Nothing staged is left beside the targets.
    assert_eq!(names(&small), ["app.db", "tree"], "{out}");
}
