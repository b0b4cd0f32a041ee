//! The five seed runbooks as dr (examples/seeds/*/runbook.sh), each run against the real
//! servers it needs, started here on 127.0.0.1 with random ports and stopped by PID
//! afterwards: a runbook builds its small system, backs it up on its schedule, simulates
//! its disasters, recovers with dr, validates as the seed's checklist does, and fails
//! unless every measured RTO and RPO meets the seed's objectives.
//!
//! `cargo test -p dr-cli --test seeds -- NAME --nocapture` runs one and shows its output.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dr_testing::postgres::{PASSWORD, give_to_postgres, postgres_owner};
use dr_testing::s3::free_port;
use dr_testing::{PgServer, RedisServer, S3Server};

/// What a runbook needs besides the dr binary.
#[derive(Default)]
struct Needs {
    postgres: bool,
    /// WAL archiving into the runbook's repository (`archive_command` calling dr).
    archiving: bool,
    redis: bool,
    s3: bool,
}

fn seed_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/seeds")
        .join(name)
}

/// Runs one runbook; panics with its whole output unless it ends with every objective met.
fn run_seed(name: &str, needs: Needs) {
    let work = tempfile::Builder::new()
        .prefix(&format!("dr-seed-{name}-"))
        .tempdir()
        .unwrap();
    give_to_postgres(work.path());
    let config = work.path().join("dr.toml");
    let dr = env!("CARGO_BIN_EXE_dr");
    let archive_command = format!("{dr} --config {} wal-push --source db %p", config.display());
    let pg = needs.postgres.then(|| {
        let mut settings = vec![("wal_level", "replica")];
        if needs.archiving {
            settings.extend([
                ("archive_mode", "on"),
                ("archive_command", archive_command.as_str()),
                ("archive_timeout", "10"),
            ]);
        }
        PgServer::start_with(&settings)
    });
    let redis = needs.redis.then(RedisServer::start);
    let s3 = needs.s3.then(S3Server::start);

    let mut command = Command::new("bash");
    command
        .arg(seed_dir(name).join("runbook.sh"))
        .env("DR", dr)
        .env("WORK", work.path())
        .env("SEED_DIR", seed_dir(name))
        .env("HOME", work.path())
        .env("SPARE_PORT", free_port().to_string())
        .env("PGPASSWORD", PASSWORD)
        .env("PG_BIN", dr_testing::postgres::bin_dir())
        .env_remove("DR_REPOSITORY")
        .env_remove("DR_CONFIG");
    if let Some(pg) = &pg {
        command
            .env("PGPORT", pg.port().to_string())
            .env("PGDATA_LIVE", pg.data_dir());
    }
    if let Some(redis) = &redis {
        command.env("REDIS_PORT", redis.port().to_string());
    }
    if let Some(s3) = &s3 {
        for (name, value) in s3.options() {
            command.env(name.to_uppercase(), value);
        }
        command.env("S3_ENDPOINT", &s3.options()[0].1);
    }
    // PostgreSQL runs as `postgres` (it refuses root), and so does everything its
    // archive_command and a recovered cluster touch: run the whole runbook as that user.
    if let Some((uid, gid)) = postgres_owner() {
        command.uid(uid).gid(gid);
    }
    let out = command.output().unwrap();
    let output = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}");
    let log = pg.as_ref().map(|pg| pg.log()).unwrap_or_default();
    assert!(
        out.status.success(),
        "runbook {name} failed:\n{output}\n--- server log ---\n{log}"
    );
    assert!(output.contains("all objectives met"), "{output}");
}

#[test]
fn rendiff() {
    run_seed("rendiff", Needs::default());
}

#[test]
fn content_crew() {
    run_seed(
        "content-crew",
        Needs {
            postgres: true,
            redis: true,
            ..Needs::default()
        },
    );
}

#[test]
fn transcode() {
    run_seed(
        "transcode",
        Needs {
            postgres: true,
            redis: true,
            s3: true,
            ..Needs::default()
        },
    );
}

#[test]
fn soundhash() {
    run_seed(
        "soundhash",
        Needs {
            postgres: true,
            archiving: true,
            s3: true,
            ..Needs::default()
        },
    );
}

#[test]
fn sav3() {
    run_seed(
        "sav3",
        Needs {
            postgres: true,
            archiving: true,
            redis: true,
            s3: true,
        },
    );
}

/// The runbooks' verdict on one figure: `objective` from lib.sh in bash, as they call it.
fn verdict(measured: &str, objective_s: &str) -> (bool, String) {
    let lib = seed_dir("lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}'; set +e; objective 'RPO: db' \"$1\" \"$2\"; echo \"MISSED=$MISSED\"",
            lib.display()
        ))
        .args(["verdict", measured, objective_s])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text.contains("MISSED=0"), text)
}

#[test]
fn a_runbook_objective_is_met_only_by_a_measurement() {
    for (measured, met) in [
        ("12.50", true),
        ("600", true),
        ("600.01", false),
        ("", false),
        ("null", false),
        ("0", false),
        ("0.00", false),
        ("-4.2", false),
        ("n/a", false),
    ] {
        let (was_met, text) = verdict(measured, "600");
        assert_eq!(was_met, met, "{measured:?}: {text}");
        if !met && measured != "600.01" {
            assert!(text.contains("no measurement"), "{measured:?}: {text}");
        }
    }
    assert!(!verdict("5", "0").0, "a zero objective is not one to meet");
}
