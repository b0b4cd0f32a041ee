//! `dr`: the operator's command line over the dr library. It parses, calls, prints and
//! picks the exit code (0 ok, 1 operational error, 2 usage error, 3 verification failed).

mod app;
mod cli;
mod commands;
mod config;
mod exit;
mod output;
mod schedule;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::CliResult;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    // The daemon's log is its output: info by default.
    let daemon = matches!(cli.command, Command::Daemon);
    init_logging(if daemon {
        cli.global.verbose.max(1)
    } else {
        cli.global.verbose
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}{}", e.prefix(), e.message);
            e.exit_code()
        }
    }
}

/// `dr list | head -1`: when the reader of stdout or stderr goes away, end quietly with 141
/// (128 + SIGPIPE, what a Unix tool killed by the signal reports; never 0, so that a
/// truncated `dr verify | head` cannot pass for a success) instead of a panic message.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        let printing = message.starts_with("failed printing to std");
        if printing && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// `--as-of` reads a past repository: only commands that read it take it (a backup or a
/// prune "as of" an earlier time would write where nobody looks, or delete nothing).
fn check_as_of(cli: &Cli) -> CliResult<()> {
    let Some(at) = cli.global.as_of else {
        return Ok(());
    };
    let reads = matches!(
        cli.command,
        Command::List { .. }
            | Command::Show { .. }
            | Command::Verify { .. }
            | Command::Restore(_)
            | Command::Status { .. }
            | Command::Copy { .. }
            | Command::Drill { .. }
            | Command::Report { .. }
    );
    if reads {
        if !cli.global.json {
            eprintln!(
                "note: reading the repository as of {} (object versions; --as-of / DR_AS_OF)",
                at.to_rfc3339()
            );
        }
        return Ok(());
    }
    Err(exit::CliError::usage(format!(
        "--as-of {} (or DR_AS_OF) only goes with list, show, verify, restore, status, copy, drill and report: this command writes to or deletes from the live repository; unset it",
        at.to_rfc3339()
    )))
}

async fn run(cli: Cli) -> CliResult<()> {
    check_as_of(&cli)?;
    let app = app::App::load(cli.global)?;
    match cli.command {
        Command::Init { recipients } => commands::init(&app, &recipients).await,
        Command::Keygen { path, passphrase } => commands::keygen(&app, path, passphrase),
        Command::Backup {
            source,
            all,
            group,
            labels,
            full,
            copy,
        } => {
            let run = commands::BackupRun {
                source: source.as_deref(),
                all,
                group: group.as_deref(),
                labels,
                full,
                copy,
            };
            commands::backup(&app, run).await
        }
        Command::Copy { to } => commands::copy(&app, to.as_deref()).await,
        Command::List { points: true, .. } => commands::list_points(&app).await,
        Command::List { source, .. } => commands::list(&app, source.as_deref()).await,
        Command::Show { id } => commands::show(&app, &id).await,
        Command::Verify {
            target,
            locks: true,
            ..
        } => commands::verify_locks(&app, target.as_deref()).await,
        Command::Verify { target, level, .. } => {
            commands::verify(&app, target.as_deref(), &level).await
        }
        Command::Restore(args) => commands::restore(&app, &args).await,
        Command::WalPush {
            path,
            source,
            pgdata,
        } => commands::wal_push(&app, &path, source.as_deref(), &pgdata).await,
        Command::WalFetch {
            name,
            dest,
            source,
            prefetch_after: false,
        } => commands::wal_fetch(&app, &name, &dest, source.as_deref()).await,
        Command::WalFetch {
            name,
            dest,
            source,
            prefetch_after: true,
        } => commands::wal_prefetch(&app, &name, &dest, source.as_deref()).await,
        Command::Drill {
            source,
            point,
            all: _,
            report,
            since,
        } => {
            commands::drill(
                &app,
                source.as_deref(),
                point.as_deref(),
                report.as_deref(),
                since.into(),
            )
            .await
        }
        Command::Report { to, since } => commands::report(&app, to.as_deref(), since.into()).await,
        Command::Status {
            prometheus,
            textfile,
        } => {
            let format = if prometheus {
                commands::StatusFormat::Prometheus
            } else {
                commands::StatusFormat::Table
            };
            commands::status(&app, format, textfile.as_deref()).await
        }
        Command::Daemon => commands::daemon(app).await,
        Command::Bench {
            size_mib,
            levels,
            threads,
            backup,
            restore_threads,
            latency,
        } => {
            let threads = if threads.is_empty() {
                vec![app.config.pipeline.options().threads]
            } else {
                threads
            };
            let args = commands::BenchArgs {
                size_mib,
                levels,
                threads,
                backup,
                restore_threads,
                latency: latency.map(Into::into),
            };
            commands::bench(&app, &args).await
        }
        Command::Prune {
            dry_run,
            orphan_grace,
        } => commands::prune(&app, dry_run, orphan_grace.into()).await,
    }
}

/// Logs go to stderr: warnings by default, `-v` info, `-vv` debug; `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // The TLS verifier logs an ERROR per attempt on an untrusted certificate; dr's own error
    // says it once, with what to do (set ca_file). RUST_LOG still shows it.
    let default = format!("{default},rustls_platform_verifier=off");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
