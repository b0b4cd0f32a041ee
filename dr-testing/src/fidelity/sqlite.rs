//! Fidelity fingerprint for SQLite, computed with the `sqlite3` CLI and `stat` (Debian
//! packages `sqlite3`, `coreutils`), never with dr: the content and schema (`.sha3sum
//! --schema`), the database properties a restore must carry (page size, journal mode,
//! `user_version`, `application_id`, auto-vacuum, text encoding), the file's owner, group
//! and mode, and what lies beside the file.
//!
//! Not compared, by design: the free-list (a restore may legitimately vacuum; dr does not,
//! but the content hash is what users read) and extended attributes (no `getfattr` on the
//! test machines; `dr_core::swap` has its own tests for them).

use std::path::Path;
use std::process::Command;

use super::Fingerprint;

/// The pragmas recorded, in this order.
const PRAGMAS: [&str; 6] = [
    "page_size",
    "journal_mode",
    "user_version",
    "application_id",
    "auto_vacuum",
    "encoding",
];

/// The fingerprint of the database file at `path`: see the module documentation. The
/// neighbour listing and the file's attributes are read before `sqlite3` opens the file.
///
/// # Panics
/// When `sqlite3` or `stat` fails (the test cannot compare anything).
pub fn fingerprint_database(path: &Path) -> Fingerprint {
    let mut fp = Fingerprint::new();
    fp.set("beside", beside(path));
    fp.set("owner", stat(path, "%u:%g"));
    fp.set("mode", stat(path, "%a"));
    fp.set("content_sha3", sqlite3(path, &[".sha3sum --schema"]));
    let script: Vec<String> = PRAGMAS.iter().map(|p| format!("PRAGMA {p};")).collect();
    let values = sqlite3(path, &[&script.join(" ")]);
    let values: Vec<&str> = values.lines().collect();
    assert_eq!(
        values.len(),
        PRAGMAS.len(),
        "pragmas of {}: {values:?}",
        path.display()
    );
    for (name, value) in PRAGMAS.iter().zip(values) {
        fp.set(*name, value);
    }
    fp
}

/// The sorted names in the directory of `path`, except those a restore is documented to add
/// (`<name>.pre-restore-*`, the replaced file and its sidecars), with the target's own name
/// shown as `<target>` so fingerprints of files with different names compare.
pub fn beside(path: &Path) -> String {
    let name = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let kept = format!("{name}.pre-restore-");
    let dir = path.parent().expect("a parent directory");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| !n.starts_with(&kept))
        .map(|n| match n.strip_prefix(&name) {
            Some(rest) => format!("<target>{rest}"),
            None => n,
        })
        .collect();
    names.sort();
    names.join(" ")
}

/// Runs `sqlite3 -batch PATH ARGS...`; returns its trimmed stdout.
///
/// # Panics
/// When it fails or writes to stderr.
pub fn sqlite3(path: &Path, args: &[&str]) -> String {
    let out = Command::new("sqlite3")
        .arg("-batch")
        .arg(path)
        .args(args)
        .output()
        .expect("the sqlite3 CLI (Debian package sqlite3)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "sqlite3 {} {args:?}: {stderr}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stat(path: &Path, format: &str) -> String {
    let out = Command::new("stat")
        .args(["-c", format])
        .arg(path)
        .output()
        .expect("stat");
    assert!(out.status.success(), "stat {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Journal mode of a generated corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// `PRAGMA journal_mode = WAL` (persistent in the file header).
    Wal,
    /// The default rollback journal (`DELETE`).
    Delete,
}

/// Builds an awkward database at `path` with the `sqlite3` CLI: the given page size and
/// journal mode, `user_version` 20260515 and `application_id` 0x44520015, BLOBs (empty,
/// with NUL bytes, random), NULLs, integer extremes, unicode text (NUL-free, combining
/// marks, emoji, right-to-left), a row of 300 kB spilling over many overflow pages, an index,
/// a view, a trigger, a `WITHOUT ROWID` table, a table with an awkward quoted name and an
/// FTS5 table. Connections are closed when it returns (no `-wal`/`-shm` left).
pub fn make_corpus(path: &Path, page_size: u32, journal: Journal) {
    let journal = match journal {
        Journal::Wal => "PRAGMA journal_mode = WAL;",
        Journal::Delete => "PRAGMA journal_mode = DELETE;",
    };
    let script = format!(
        "PRAGMA page_size = {page_size};
         {journal}
         PRAGMA user_version = 20260515;
         PRAGMA application_id = 1146224661;
         CREATE TABLE items (id INTEGER PRIMARY KEY, b BLOB, n, t TEXT);
         CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT NOT NULL);
         CREATE TRIGGER items_audit AFTER INSERT ON items
             BEGIN INSERT INTO audit (what) VALUES ('insert ' || new.id); END;
         INSERT INTO items VALUES
             (1, x'00ff00fe', NULL, 'zürich ✓ 東京 🦀 a\u{0301} שלום'),
             (2, zeroblob(0), NULL, ''),
             (3, NULL, 3.5, char(128512, 10, 13, 9)),
             (4, randomblob(300000), -9223372036854775808, 'big'),
             (5, x'', 9223372036854775807, NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO items (b, n, t) SELECT randomblob(i % 700), i, 'row ' || i FROM n;
         CREATE INDEX items_t ON items (t);
         CREATE VIEW big_items AS SELECT id, length(b) AS bytes FROM items WHERE length(b) > 1000;
         CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
         INSERT INTO kv VALUES ('α', 1), ('β', x'00'), ('', NULL), ('k''quote', 'v');
         CREATE TABLE \"odd \"\"name\"\" ; table\" (\"col with space\" TEXT);
         INSERT INTO \"odd \"\"name\"\" ; table\" VALUES ('x');
         CREATE VIRTUAL TABLE docs USING fts5 (body);
         INSERT INTO docs VALUES ('the quick brown fox'), ('überprüfung der daten');
         DELETE FROM items WHERE id BETWEEN 100 AND 400;"
    );
    sqlite3(path, &[&script]);
}
