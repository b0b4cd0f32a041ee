//! The roles of a PostgreSQL backup: `dr restore SOURCE --globals [--server URL]`, and the
//! roles `dr restore SOURCE --server URL` creates before the database.

use dr_core::{BackupReader, BackupSelector};
use dr_postgres::{GLOBALS_ARTIFACT, GlobalsOutcome, PgConnection};

use crate::app::App;
use crate::cli::RestoreArgs;
use crate::config::SourceConfig;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr restore SOURCE [ID] --globals [--server URL] [--with-role-passwords]`: only the roles.
pub async fn restore_globals(
    app: &App,
    args: &RestoreArgs,
    source: &SourceConfig,
) -> CliResult<()> {
    if !source.supports_in_place() {
        return Err(CliError::usage(
            "--globals is for PostgreSQL (logical) sources: their backups hold the roles",
        ));
    }
    let conn = source.postgres_on(args.server.as_deref())?;
    let selector: BackupSelector = args.backup.parse().map_err(CliError::from)?;
    let repo = app.read_repository(None).await?;
    if app.identity_path().is_none() {
        return Err(CliError::usage(
            "restoring needs the secret key: pass --identity FILE or set `identity` in dr.toml",
        ));
    }
    let reader = repo
        .open_backup(args.source_name(), &selector)
        .await
        .doing(|| {
            format!(
                "finding the backup of {} whose roles to restore",
                args.source_name()
            )
        })?;
    let outcome = apply(&conn, &reader, args.with_role_passwords).await?;
    if app.global.json {
        return output::json(&outcome);
    }
    print(&reader, &conn, &outcome);
    Ok(())
}

/// Before `--server`: the backup's roles onto that server (if the backup holds them).
pub async fn before_server_restore(
    app: &App,
    conn: &PgConnection,
    reader: &BackupReader,
    with_passwords: bool,
) -> CliResult<()> {
    if reader.manifest().artifact(GLOBALS_ARTIFACT).is_err() {
        if !app.global.json {
            println!(
                "backup {} holds no roles (globals = false): the roles it needs must exist on the server",
                reader.id()
            );
        }
        return Ok(());
    }
    let outcome = apply(conn, reader, with_passwords).await?;
    if !app.global.json {
        print(reader, conn, &outcome);
    }
    Ok(())
}

async fn apply(
    conn: &PgConnection,
    reader: &BackupReader,
    with_passwords: bool,
) -> CliResult<GlobalsOutcome> {
    dr_postgres::apply_globals(&conn.with_database("postgres"), reader, with_passwords)
        .await
        .doing(|| format!("restoring the roles of backup {}", reader.id()))
}

fn print(reader: &BackupReader, conn: &PgConnection, outcome: &GlobalsOutcome) {
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let server = conn.with_database("postgres");
    println!("roles of backup {} on {server}:", reader.id());
    let passwords = if outcome.created.is_empty() {
        ""
    } else if outcome.passwords_restored {
        " (with their passwords)"
    } else {
        " (without passwords: --with-role-passwords restores them, or set them with ALTER ROLE ... PASSWORD)"
    };
    println!("  created: {}{passwords}", list(&outcome.created));
    println!(
        "  already there, left as they are: {}",
        list(&outcome.existing)
    );
    println!("  memberships granted: {}", list(&outcome.memberships));
    for skipped in &outcome.skipped {
        println!("  not applied: {skipped}");
    }
}
