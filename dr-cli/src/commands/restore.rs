//! `dr restore`.

use dr_core::{BackupOptions, BackupSelector, RestoreOptions};

use crate::app::App;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr restore SOURCE [ID|latest] [--at T] [--to PATH] [--force]`.
pub async fn restore(app: &App, args: &RestoreArgs) -> CliResult<()> {
    if let Some(point) = &args.point {
        return Box::pin(super::points::restore_point(app, args, point)).await;
    }
    let source = app.config.source(args.source_name())?;
    if args.globals {
        return super::pg_globals::restore_globals(app, args, source).await;
    }
    if args.with_role_passwords && args.server.is_none() {
        return Err(CliError::usage(
            "--with-role-passwords is for --globals and --server (the roles a restore creates)",
        ));
    }
    if source.is_physical() {
        return super::pitr::restore(app, args).await;
    }
    if let Some(root) = source.directory() {
        return super::files::restore(app, args, root).await;
    }
    if let Some(url) = source.bucket() {
        return super::files::restore_bucket(app, args, source, url).await;
    }
    if !args.only.is_empty() {
        return Err(CliError::usage("--only is for directory sources"));
    }
    if args.dry_run || args.start || args.keep_archiving {
        return Err(CliError::usage(
            "--dry-run, --start and --keep-archiving are for physical PostgreSQL sources (method = \"physical\")",
        ));
    }
    if args.in_place && !source.supports_in_place() {
        return Err(CliError::usage(
            "--in-place is for PostgreSQL sources (SQLite restores keep the previous file anyway)",
        ));
    }
    if args.server.is_some() && !source.accepts_server() {
        return Err(CliError::usage(
            "--server is for PostgreSQL (logical) and Redis sources",
        ));
    }
    let mut restorer = source.restorer(
        args.in_place,
        args.server.as_deref(),
        args.to.as_deref(),
        args.wait.into(),
    )?;
    let selector: BackupSelector = match &args.at {
        Some(at) => {
            let time = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| {
                CliError::usage(format!(
                    "--at {at:?} is not an RFC 3339 time ({e}); e.g. 2026-11-23T12:30:00Z"
                ))
            })?;
            BackupSelector::AtOrBefore(time.with_timezone(&chrono::Utc))
        }
        None => args.backup.parse().map_err(CliError::from)?,
    };
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    if app.identity_path().is_none() {
        return Err(CliError::usage(
            "restoring needs the secret key: pass --identity FILE or set `identity` in dr.toml",
        ));
    }
    let reader = repo
        .open_backup(args.source_name(), &selector)
        .await
        .doing(|| format!("finding the backup of {} to restore", args.source_name()))?;
    if source.is_redis_replay(args.server.as_deref(), args.to.as_deref()) {
        // Replacing keys of a live server with --force backs it up into the repository first.
        restorer = Box::new(
            source
                .redis_replay(args.server.as_deref())?
                .with_safety_backup(repo.clone(), args.source_name()),
        );
    }
    if let Some(server) = args
        .server
        .as_deref()
        .filter(|_| source.supports_in_place())
    {
        // The roles first: the dump's owners and grants name them.
        let conn = source.postgres_on(Some(server))?;
        super::pg_globals::before_server_restore(app, &conn, &reader, args.with_role_passwords)
            .await?;
    }
    let mut safety_id = None;
    if args.in_place {
        // The whole backup is read and checked before the safety backup and the first write:
        // a damaged backup is refused with the live database untouched.
        dr_postgres::check_whole_backup(&reader, args.source_name())
            .await
            .doing(|| {
                format!(
                    "checking backup {} before restoring it in place",
                    reader.id()
                )
            })?;
        let mut options = BackupOptions::default();
        options.labels = vec!["pre-restore".into()];
        let safety = repo
            .backup(args.source_name(), source.backup()?.as_ref(), &options)
            .await
            .doing(|| {
                format!(
                    "taking a safety backup of {} before restoring in place (nothing was written)",
                    args.source_name()
                )
            })?;
        bar.finish();
        if !app.global.json {
            println!(
                "backup {} checked (every part's stored and plain SHA-256); safety backup {} of the current {} taken (label pre-restore)",
                reader.id(),
                safety.id,
                args.source_name()
            );
        }
        safety_id = Some(safety.id);
    }
    let mut options = RestoreOptions::default()
        .with_force(args.force)
        .with_swap(args.swap);
    if let Some(to) = &args.to {
        options = options.with_target(to);
    }
    let report = restorer.restore(&reader, &options).await;
    bar.finish();
    let report = report
        .doing(|| match &safety_id {
            Some(safety) => format!(
                "restoring backup {id} of {source} in place (safety backup {safety} holds the database as it was before: to undo, run `dr restore {source} {safety} --in-place`; to finish, fix the cause and run `dr restore {source} {id} --in-place` again)",
                id = reader.id(),
                source = args.source_name()
            ),
            None => format!("restoring backup {} of {}", reader.id(), args.source_name()),
        })
        .map_err(|e| source.explain_auth(e))?;
    if app.global.json {
        return output::json(&report);
    }
    println!(
        "restored {} {} ({}) into {} in {:.1} s",
        args.source_name(),
        report.backup_id,
        output::size(report.restored_bytes),
        report.target,
        report.elapsed_ms as f64 / 1000.0
    );
    if let Some(kept) = &report.previous_kept_at {
        println!("the previous data is kept at {kept}");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(())
}
