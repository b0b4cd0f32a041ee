//! Copies: `dr backup --copy` to a local directory and to the S3-compatible test server,
//! `dr copy` idempotent, and a restore that falls back to the copies when the repository
//! is gone.

use std::path::Path;
use std::process::Command;

use dr_testing::S3Server;

fn dr(dir: &Path, s3: &S3Server, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DR_REPOSITORY");
    for (name, value) in s3.options() {
        command.env(name.to_uppercase(), value);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn backups_are_copied_and_restores_fall_back_to_the_copies() {
    let s3 = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), b"<h1>hello</h1>").unwrap();
    std::fs::write(
        dir.join("dr.toml"),
        format!(
            "repository = \"./repo\"\nidentity = \"./key.txt\"\ncopies = [\"./copy\", \"{}\"]\n[sources.site]\nkind = \"directory\"\npath = \"./site\"\n",
            s3.url("dr-copy")
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| {
        let (code, out) = dr(dir, &s3, args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    };
    ok(&["keygen"]);
    ok(&["init"]);
    let out = ok(&["backup", "site", "--copy"]);
    assert!(out.contains("1 backups copied"), "{out}");
    assert_eq!(out.matches("1 backups copied").count(), 2, "{out}");
    let out = ok(&["copy"]);
    assert_eq!(out.matches("0 backups copied").count(), 2, "{out}");
    assert!(out.contains("1 already there"), "{out}");
    let listed = ok(&["list"]);
    assert!(
        listed.contains("COPIES") && listed.contains("2/2"),
        "{listed}"
    );

    // The repository is lost: the restore reads from the first copy.
    std::fs::remove_dir_all(dir.join("repo")).unwrap();
    let (code, out) = dr(dir, &s3, &["restore", "site", "--to", "restored"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reading from the copy at"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("restored/index.html")).unwrap(),
        b"<h1>hello</h1>"
    );

    // And the first copy too: the S3 one.
    std::fs::remove_dir_all(dir.join("copy")).unwrap();
    let (code, out) = dr(dir, &s3, &["restore", "site", "--to", "again"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("s3://dr-test/dr-copy"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("again/index.html")).unwrap(),
        b"<h1>hello</h1>"
    );
}
