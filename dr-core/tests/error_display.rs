//! The Display of every `dr_core::Error` variant, compared with a checked-in snapshot
//! (`tests/snapshots/error_display.txt`). After a deliberate change of wording, rewrite it
//! with `DR_UPDATE_SNAPSHOTS=1 cargo test -p dr-core --test error_display` and review the
//! diff.

use std::path::PathBuf;

use dr_core::{Error, Refusal};

const SNAPSHOT: &str = "tests/snapshots/error_display.txt";

/// One value of every variant, named.
fn every_variant() -> Vec<(&'static str, Error)> {
    let io = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    vec![
        (
            "NotInitialised",
            Error::NotInitialised {
                location: "s3://bucket/dr".into(),
            },
        ),
        (
            "RepositoryExists",
            Error::RepositoryExists {
                location: "/var/backups/dr".into(),
            },
        ),
        (
            "UnsupportedFormat",
            Error::UnsupportedFormat {
                what: "manifest",
                found: 9,
                supported: 1,
            },
        ),
        (
            "NoMatchingIdentity",
            Error::NoMatchingIdentity {
                recipients: "age1abc, age1def".into(),
            },
        ),
        ("NoIdentity", Error::NoIdentity),
        (
            "CorruptPart",
            Error::CorruptPart {
                key: "backups/app/20261123T021500Z-7f3a/db.000000.zst.age".into(),
                what: "stored",
                expected: "aa".into(),
                actual: "bb".into(),
            },
        ),
        (
            "DamagedPart",
            Error::DamagedPart {
                key: "backups/app/20261123T021500Z-7f3a/db.000000.zst.age".into(),
                detail: "truncated after 12 bytes".into(),
            },
        ),
        (
            "MissingObject",
            Error::MissingObject {
                key: "backups/app/20261123T021500Z-7f3a/db.000001.zst.age".into(),
            },
        ),
        (
            "BackupNotFound",
            Error::BackupNotFound {
                selector: "app latest".into(),
            },
        ),
        (
            "BadManifest",
            Error::BadManifest {
                key: "backups/app/20261123T021500Z-7f3a/manifest.json".into(),
                detail: "expected value at line 1 column 1".into(),
            },
        ),
        (
            "RecipientsChanged",
            Error::RecipientsChanged {
                location: "/var/backups/dr".into(),
                pinned: "age1abc".into(),
                found: "age1evil".into(),
            },
        ),
        (
            "UnreadableManifest",
            Error::UnreadableManifest {
                key: "backups/app/20261123T021500Z-7f3a/manifest.json".into(),
                detail: "truncated".into(),
                instead: "choose an older backup by id".into(),
            },
        ),
        (
            "NoSuchArtifact",
            Error::NoSuchArtifact {
                backup: "20261123T021500Z-7f3a".into(),
                artifact: "rdb".into(),
            },
        ),
        (
            "InvalidName",
            Error::InvalidName {
                what: "source",
                name: "../etc".into(),
            },
        ),
        (
            "BadKey",
            Error::BadKey {
                origin: "/etc/dr/key.txt".into(),
                detail: "not an age identity".into(),
            },
        ),
        (
            "IdentityExists",
            Error::IdentityExists(PathBuf::from("/etc/dr/key.txt")),
        ),
        (
            "ChecksFailed",
            Error::ChecksFailed {
                subject: "a scratch copy".into(),
                problems: "integrity_check: row 3 missing; count(jobs) is 0".into(),
            },
        ),
        (
            "Store",
            Error::store(
                "reading dr-repo.json",
                dr_core::object_store::Error::NotFound {
                    path: "dr-repo.json".into(),
                    source: "no such object".into(),
                },
            ),
        ),
        ("Io", Error::io("reading /srv/app.db", io())),
        (
            "InvalidLocation",
            Error::InvalidLocation {
                location: "ftp://host/dr".into(),
                detail: "unknown scheme ftp: use a path, file://, s3://, gs://, az:// or memory://"
                    .into(),
            },
        ),
        (
            "Backend",
            Error::backend(
                "postgres",
                "connecting to postgres://app@127.0.0.1:1/shop",
                "cannot reach PostgreSQL at 127.0.0.1:1: connection refused; is the server running and the address right?",
            )
            .retryable(),
        ),
        (
            "Tool",
            Error::Tool {
                program: "pg_restore".into(),
                status: Some(1),
                stderr_tail: "pg_restore: error: could not execute query: ERROR:  role \"app\" does not exist".into(),
            },
        ),
        (
            "Tool (signal, no message)",
            Error::Tool {
                program: "pg_dump".into(),
                status: None,
                stderr_tail: String::new(),
            },
        ),
        (
            "ToolMissing",
            Error::ToolMissing {
                program: "pg_dump".into(),
                install: "run `apt-get install -y postgresql-client`".into(),
            },
        ),
        (
            "InvalidData",
            Error::invalid_data("RDB", "the RDB is damaged at byte 42: bad length encoding"),
        ),
        (
            "TargetInUse",
            Error::TargetInUse {
                target: "/srv/app.db".into(),
                holder_pid: Some(4242),
                holder: "process 4242 (app) has it open".into(),
                hint: "stop the application first, restore with --to ANOTHER_PATH, or replace it anyway with --force"
                    .into(),
            },
        ),
        (
            "TargetExists",
            Error::TargetExists {
                target: "/srv/pgdata".into(),
                found: "is not empty".into(),
                hint: "a point-in-time restore goes into a new data directory (the current one is never touched)".into(),
            },
        ),
        (
            "Refused (invalid input)",
            Error::refused(
                Refusal::InvalidInput,
                "\"x\" is not a WAL position (like 0/3000028)",
            ),
        ),
        (
            "Refused (wrong kind)",
            Error::refused(
                Refusal::WrongKind,
                "backup 20261123T021500Z-7f3a holds no app.dump: it is not a logical PostgreSQL backup",
            ),
        ),
        (
            "Refused (incomplete)",
            Error::refused(
                Refusal::Incomplete,
                "recovery point P1 is incomplete (cache failed): restore its sources one by one, or pass --force to restore what it holds",
            ),
        ),
        (
            "Refused (unavailable)",
            Error::refused(
                Refusal::Unavailable,
                "cannot recover to 2026-11-23T12:30:00Z: the WAL archive ends earlier",
            ),
        ),
        (
            "Refused (conflict)",
            Error::refused(
                Refusal::Conflict,
                "refusing to archive WAL of cluster 1 into the archive of cluster 2 (source db)",
            ),
        ),
        (
            "Refused (unsupported)",
            Error::refused(
                Refusal::Unsupported,
                "restores of configured sources go through their own command",
            ),
        ),
        (
            "Restore",
            Error::restore(
                "redis",
                "stopped part of the way: 10 of the 20 keys were written",
            )
            .caused_by(io()),
        ),
        (
            "HookFailed",
            Error::HookFailed {
                phase: "before_restore",
                command: "`systemctl stop app`".into(),
                error: "exit status 1".into(),
                undone: "restored",
            },
        ),
        (
            "Internal",
            Error::internal("walking the tree", "task 7 panicked"),
        ),
        (
            "Usage",
            Error::Usage("the registry has no kind \"journal\"".into()),
        ),
        (
            "Encrypt",
            Error::Encrypt("no recipients given".into()),
        ),
    ]
}

fn rendered() -> String {
    every_variant()
        .iter()
        .map(|(name, error)| format!("{name}\n  {error}\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn display_matches_the_snapshot() {
    let text = rendered();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    if std::env::var_os("DR_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("writing the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        text == expected,
        "the Display of dr_core::Error changed; if on purpose, rerun with DR_UPDATE_SNAPSHOTS=1 and review the diff of {SNAPSHOT}\n--- now ---\n{text}"
    );
}

/// Messages start with a capital letter and have no trailing period (the policy in error.rs).
#[test]
fn messages_start_capitalised_without_a_trailing_period() {
    for (name, error) in every_variant() {
        let text = error.to_string();
        let first = text.chars().next().unwrap_or(' ');
        // A program's name may open a message (`pg_dump is not installed`).
        assert!(
            first.is_uppercase() || name.starts_with("Tool"),
            "{name}: {text}"
        );
        assert!(!text.ends_with('.'), "{name}: {text}");
    }
}

#[test]
fn retryable_says_whether_trying_again_can_help() {
    let retryable: Vec<&str> = every_variant()
        .into_iter()
        .filter(|(_, e)| e.is_retryable())
        .map(|(name, _)| name)
        .collect();
    // A store NotFound is definite; a timed-out read and an unreachable server are not.
    assert_eq!(retryable, ["Io", "Backend"]);
    let not = Error::backend("redis", "login", "WRONGPASS");
    assert!(!not.is_retryable());
    assert!(not.retryable_if(true).is_retryable());
}

#[test]
fn causes_are_kept_as_sources() {
    use std::error::Error as _;
    let e = Error::backend("sqlite", "opening /srv/app.db", "database is locked")
        .caused_by(std::io::Error::other("locked"));
    assert_eq!(
        e.source().map(ToString::to_string).as_deref(),
        Some("locked")
    );
    assert!(Error::backend("sqlite", "x", "y").source().is_none());
}

#[test]
fn hints_are_appended_and_keep_the_variant() {
    let e = Error::TargetInUse {
        target: "database shop".into(),
        holder_pid: Some(7),
        holder: "1 session(s) still connected".into(),
        hint: "shop was not replaced".into(),
    }
    .with_hint("; the restored copy is kept as database shop_restored");
    assert!(matches!(
        e,
        Error::TargetInUse {
            holder_pid: Some(7),
            ..
        }
    ));
    assert!(
        e.to_string().ends_with(
            "shop was not replaced; the restored copy is kept as database shop_restored"
        ),
        "{e}"
    );
    let refused =
        Error::refused(Refusal::Incomplete, "P1 is incomplete").with_hint(" (see dr points)");
    assert_eq!(refused.detail(), "P1 is incomplete (see dr points)");
}

#[test]
fn tool_keeps_the_tail_of_stderr() {
    use std::os::unix::process::ExitStatusExt;
    let stderr: Vec<String> = (1..=80).map(|n| format!("line {n}")).collect();
    let e = Error::tool(
        "pg_restore",
        std::process::ExitStatus::from_raw(1 << 8),
        stderr.join("\n"),
    );
    let Error::Tool {
        status,
        stderr_tail,
        ..
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(*status, Some(1));
    assert!(stderr_tail.ends_with("line 80") && !stderr_tail.contains("line 30\n"));
    assert!(
        e.to_string()
            .starts_with("pg_restore failed (exit status 1): line 31"),
        "{e}"
    );
}
