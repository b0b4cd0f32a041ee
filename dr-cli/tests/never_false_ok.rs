//! Nothing lost, never a false OK, through the `dr` binary: a committed backup whose
//! manifest is unreadable survives prune (its parts still decode with the stock `age` and
//! `zstd`), and list, status, verify and restore say so; pinned recipients; a closed pipe;
//! passwords never printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{dr, dr_with, ok};

struct Repo {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Repo {
    /// A SQLite source `app` with three backups (keep_last = 1: prune would delete two).
    fn with_backups() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let db = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO t SELECT hex(randomblob(20)) FROM n;",
        )
        .unwrap();
        let config = dir.path().join("dr.toml");
        std::fs::write(
            &config,
            format!(
                "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[retention]\nkeep_last = 1\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        ok(&config, &["keygen"]);
        ok(&config, &["init"]);
        for _ in 0..3 {
            ok(&config, &["backup", "app"]);
        }
        Repo { dir, config }
    }

    fn ids(&self) -> Vec<String> {
        common::listed_ids(&self.config, None)
    }

    fn backup_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join("repo/backups/app").join(id)
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut pending = vec![self.dir.path().join("repo/backups")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }
}

/// Directories under `root` with nothing in them.
fn empty_dirs(root: &Path) -> Vec<PathBuf> {
    let mut empty = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if entries.is_empty() {
            empty.push(dir.clone());
        }
        pending.extend(entries.into_iter().filter(|p| p.is_dir()));
    }
    empty
}

/// FORMAT.md's recipe: `for p in parts; do age -d -i key "$p"; done | zstd -d`.
fn decode_by_hand(dir: &Path, key: &Path) -> Vec<u8> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".zst.age"))
        .collect();
    parts.sort();
    assert!(!parts.is_empty(), "no parts in {}", dir.display());
    let mut plain = Vec::new();
    for part in parts {
        let mut age = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(key)
            .arg(&part)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the age CLI (Debian package age)");
        let out = Command::new("zstd")
            .args(["-d", "-c"])
            .stdin(age.stdout.take().unwrap())
            .output()
            .expect("the zstd CLI");
        assert!(
            age.wait().unwrap().success(),
            "age -d of {}",
            part.display()
        );
        assert!(out.status.success(), "zstd -d of {}", part.display());
        plain.extend(out.stdout);
    }
    plain
}

fn sqlite_sha3(path: &Path) -> String {
    let out = Command::new("sqlite3")
        .arg(path)
        .arg(".sha3sum")
        .output()
        .expect("the sqlite3 CLI");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn an_unreadable_manifest_survives_prune_and_is_reported_everywhere() {
    type Damage = fn(&str) -> String;
    let cases: [(&str, Damage); 2] = [
        ("invalid JSON", |text| text[..text.len() / 2].to_owned()),
        ("newer format", |text| {
            text.replace("\"format_version\": 1", "\"format_version\": 7")
        }),
    ];
    for (what, damage) in cases {
        let repo = Repo::with_backups();
        let ids = repo.ids();
        // Damage the oldest: the one retention would delete first.
        let victim = ids.last().unwrap().clone();
        let manifest = repo.backup_dir(&victim).join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, damage(&text)).unwrap();
        let original = sqlite_sha3(&repo.dir.path().join("app.db"));

        let (code, out) = dr(&repo.config, &["list"]);
        assert_eq!(code, 0, "{what}: {out}");
        assert!(
            out.contains("UNREADABLE") && out.contains(&victim),
            "{what}: {out}"
        );
        let (code, out) = dr(&repo.config, &["status"]);
        assert_eq!(code, 3, "{what}: {out}");
        assert!(out.contains("manifest is unreadable"), "{what}: {out}");
        let (code, out) = dr(&repo.config, &["verify"]);
        assert_eq!(code, 3, "{what}: {out}");
        assert!(
            out.contains(&format!("backups/app/{victim}/manifest.json")),
            "{what}: {out}"
        );
        let (code, out) = dr(&repo.config, &["verify", "app"]);
        assert_eq!(code, 3, "{what}: {out}");
        assert!(out.contains(&victim), "{what}: {out}");
        let (code, out) = dr(&repo.config, &["verify", &victim]);
        assert_eq!(code, 3, "{what}: {out}");

        let before = repo.files();
        let (code, out) = dr(&repo.config, &["prune", "--orphan-grace", "0s"]);
        assert_eq!(
            code, 3,
            "{what}: prune must report the unreadable backup: {out}"
        );
        let after = repo.files();
        let victims: Vec<&PathBuf> = before
            .iter()
            .filter(|p| p.starts_with(repo.backup_dir(&victim)))
            .collect();
        assert!(victims.len() >= 3, "{victims:?}");
        for file in &victims {
            assert!(
                after.contains(file),
                "{what}: prune deleted {}",
                file.display()
            );
        }
        if what == "newer format" {
            assert_eq!(
                after, before,
                "a source with a newer manifest is left alone: {out}"
            );
        } else {
            assert!(
                after.len() < before.len(),
                "the readable old backup is pruned: {out}"
            );
        }
        let repo_root = repo.dir.path().join("repo");
        assert_eq!(
            empty_dirs(&repo_root),
            Vec::<PathBuf>::new(),
            "{what}: prune left husks"
        );
        let restored = repo.dir.path().join("by-hand.db");
        let plain = decode_by_hand(&repo.backup_dir(&victim), &repo.dir.path().join("key.txt"));
        std::fs::write(&restored, plain).unwrap();
        assert_eq!(sqlite_sha3(&restored), original, "{what}");
    }
}

#[test]
fn restoring_latest_never_skips_an_unreadable_newest_backup() {
    let repo = Repo::with_backups();
    let ids = repo.ids();
    let newest = &ids[0];
    std::fs::write(repo.backup_dir(newest).join("manifest.json"), "{").unwrap();
    let target = repo.dir.path().join("restored.db");
    let to = target.to_str().unwrap();
    let (code, out) = dr(&repo.config, &["restore", "app", "--to", to]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(newest) && out.contains(&ids[1]), "{out}");
    assert!(!target.exists());
    ok(&repo.config, &["restore", "app", &ids[1], "--to", to]);
    assert!(target.exists());
}

#[test]
fn rewritten_recipients_are_refused_for_new_backups() {
    let repo = Repo::with_backups();
    let stranger = repo.dir.path().join("stranger.txt");
    let out = ok(&repo.config, &["keygen", stranger.to_str().unwrap()]);
    let theirs = out
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap()
        .to_owned();
    let config_json = repo.dir.path().join("repo/dr-repo.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_json).unwrap()).unwrap();
    let ours = config["recipients"][0].as_str().unwrap().to_owned();
    config["recipients"] = serde_json::json!([ours, theirs]);
    std::fs::write(&config_json, config.to_string()).unwrap();

    let before = repo.ids().len();
    let (code, out) = dr(&repo.config, &["backup", "app"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&theirs) && out.contains(&ours), "{out}");
    assert_eq!(repo.ids().len(), before, "nothing committed");
    let repo_root = repo.dir.path().join("repo");
    assert_eq!(
        empty_dirs(&repo_root),
        Vec::<PathBuf>::new(),
        "a refused backup left husks"
    );
    let (code, out) = dr(&repo.config, &["verify"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("is pinned to"), "{out}");
    let (code, out) = dr(&repo.config, &["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("is pinned to"), "{out}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let repo = Repo::with_backups();
    for args in [
        vec!["list"],
        vec!["verify"],
        vec!["list", "--json"],
        vec!["status"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dr"))
            .arg("--config")
            .arg(&repo.config)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "dr {args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "dr {args:?}: {stderr}");
    }
}

#[test]
fn passwords_in_urls_that_do_not_parse_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.toml");
    let password = "Zq7hunter2secret";
    for url in [
        format!("postgres://app:{password}@127.0.0.1:54x32/shop"),
        format!("redis://:{password}@127.0.0.1:63x79"),
        format!("s3://AKIA:{password}@bucket:x/prefix"),
        format!("postgres://app:{password}@[::1/shop"),
    ] {
        let kind = if url.starts_with("redis") {
            "redis"
        } else {
            "postgres"
        };
        std::fs::write(
            &config,
            format!(
                "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.s]\nkind = \"{kind}\"\nurl = \"{url}\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let _ = dr(&config, &["keygen"]);
        let _ = dr(&config, &["init"]);
        let runs = [
            vec!["backup", "s"],
            vec!["verify"],
            vec!["status"],
            vec!["--repository", url.as_str(), "list"],
            vec!["-vv", "backup", "s"],
        ];
        for args in &runs {
            let (_, out) = dr_with(&config, args, &[("RUST_LOG", "trace")]);
            assert!(
                !out.contains(password),
                "dr {args:?} printed the password:\n{out}"
            );
        }
    }
}

#[test]
fn a_wrong_password_from_password_env_names_the_variable() {
    let server = dr_testing::RedisServer::start_with(Some("right-secret"), &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{1}\"\npassword_env = \"CACHE_PASSWORD\"\n",
            dir.path().display(),
            server.port()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    let (code, out) = dr_with(
        &config,
        &["backup", "cache"],
        &[("CACHE_PASSWORD", "wrong-secret")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CACHE_PASSWORD"), "{out}");
    assert!(!out.contains("wrong-secret"), "{out}");
    let out = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_dr"))
            .arg("--config")
            .arg(&config)
            .args(["backup", "cache"])
            .env("CACHE_PASSWORD", "right-secret")
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert!(!out.contains("error"), "{out}");
}

#[test]
fn selections_that_match_nothing_are_usage_errors_saying_what_exists() {
    let repo = Repo::with_backups();
    let ids = repo.ids();
    let tree = repo.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    std::fs::write(tree.join("docs/a.txt"), "a").unwrap();
    let mut text = std::fs::read_to_string(&repo.config).unwrap();
    text.push_str(&format!(
        "[sources.tree]\nkind = \"directory\"\npath = \"{}\"\n",
        tree.display()
    ));
    std::fs::write(&repo.config, text).unwrap();
    ok(&repo.config, &["backup", "tree"]);
    let target = repo.dir.path().join("out");
    let to = target.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["restore", "app", "20200101T000000Z-abcd", "--to", to],
            ids[0].as_str(),
        ),
        (
            &["restore", "app", "--at", "2000-01-01T00:00:00Z", "--to", to],
            ids[0].as_str(),
        ),
        (&["restore", "nosuch", "--to", to], "app"),
        (&["list", "nosuch"], "app"),
        (&["verify", "nosuch"], "dr list"),
        (
            &["restore", "--point", "20200101T000000Z-abcd"],
            "no recovery points",
        ),
        (
            &["restore", "tree", "--only", "nomatch", "--to", to],
            "docs",
        ),
    ];
    for (args, names) in cases {
        let (code, out) = dr(&repo.config, args);
        assert_eq!(code, 2, "dr {args:?}: {out}");
        assert!(
            out.contains(names),
            "dr {args:?} does not say what exists: {out}"
        );
        assert!(!target.exists(), "dr {args:?} wrote {to}");
    }
    // A selection that matches something still restores it.
    ok(
        &repo.config,
        &["restore", "tree", "--only", "docs", "--to", to],
    );
    assert_eq!(
        std::fs::read_to_string(target.join("docs/a.txt")).unwrap(),
        "a"
    );
}

#[test]
fn a_failed_user_check_says_the_backup_is_intact() {
    let repo = Repo::with_backups();
    let mut text = std::fs::read_to_string(&repo.config).unwrap();
    text.push_str(
        "[[sources.app.checks]]\nname = \"rows\"\nsql = \"SELECT count(*) FROM t\"\nexpect = \">= 1000000\"\n",
    );
    std::fs::write(&repo.config, text).unwrap();
    let (code, out) = dr(&repo.config, &["verify", "app", "--level", "restore"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("check rows"), "{out}");
    assert!(out.contains("intact"), "{out}");
    assert!(!out.contains("investigate the repository"), "{out}");
}

#[test]
fn verify_of_a_source_whose_only_manifest_is_damaged_reports_it() {
    let repo = Repo::with_backups();
    let db = rusqlite::Connection::open(repo.dir.path().join("other.db")).unwrap();
    db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let mut text = std::fs::read_to_string(&repo.config).unwrap();
    text.push_str(&format!(
        "[sources.other]\nkind = \"sqlite\"\npath = \"{}/other.db\"\n",
        repo.dir.path().display()
    ));
    std::fs::write(&repo.config, text).unwrap();
    ok(&repo.config, &["backup", "other"]);
    let dir = repo.dir.path().join("repo/backups/other");
    let id = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(id.join("manifest.json"), "not json").unwrap();
    let (code, out) = dr(&repo.config, &["verify", "other"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("manifest is unreadable"), "{out}");
    assert!(!out.contains("no backup id or source named"), "{out}");
}

#[test]
fn status_is_not_ok_when_a_part_of_the_newest_backup_is_gone() {
    let repo = Repo::with_backups();
    let (code, _) = dr(&repo.config, &["prune"]);
    assert_eq!(code, 0);
    let (code, out) = dr(&repo.config, &["status"]);
    assert_eq!(code, 0, "{out}");
    let newest = &repo.ids()[0];
    std::fs::remove_file(repo.backup_dir(newest).join("db.000000.zst.age")).unwrap();
    let (code, out) = dr(&repo.config, &["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("db.000000.zst.age"), "{out}");
}

#[test]
fn prune_keeps_the_base_of_a_kept_increment_whose_manifest_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("big.bin"), vec![7u8; 200_000]).unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[retention]\nkeep_last = 1\n[sources.files]\nkind = \"directory\"\npath = \"{0}/tree\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "files"]);
    std::fs::write(tree.join("small.txt"), "new").unwrap();
    ok(&config, &["backup", "files"]);
    let backups = dir.path().join("repo/backups/files");
    // The base is the backup the other depends on (ids of one second do not sort by time).
    let increment: serde_json::Value = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path().join("manifest.json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .find(|m: &serde_json::Value| m["depends_on"].is_array())
        .expect("the second backup is an increment");
    let base = backups.join(increment["depends_on"][0].as_str().unwrap());
    std::fs::remove_file(base.join("manifest.json")).unwrap();
    let before = std::fs::read_dir(&base).unwrap().count();
    let _ = dr(&config, &["prune", "--orphan-grace", "0s"]);
    assert_eq!(
        std::fs::read_dir(&base).unwrap().count(),
        before,
        "prune took the base"
    );
}
