//! A custom source kind registered once, then backed up, verified, drilled, benched and restored
//! through the same library operations the `dr` command uses.
//!
//! `cargo run --example custom_kind`
//!
//! The kind (`journal.rs`) is an append-only file of JSON lines. Nothing in dr knows it:
//! it comes in through the registry, like the built-in backends.

mod journal;

use std::path::Path;
use std::sync::Arc;

use dr::ops::backup::{BackupRunOptions, backup};
use dr::ops::bench::{BenchOptions, RestoreChoice, bench};
use dr::ops::drill::{DrillOptions, DrillTarget, drill};
use dr::ops::restore::{RestoreRunOptions, restore};
use dr::ops::verify::{VerifyOptions, verify};
use dr::ops::{ConfiguredSource, System};
use dr::{
    Error, Event, Identities, Progress, ProgressHandle, Result, Scope, SourceSettings, VerifyLevel,
};

/// Prints every phase that starts, finishes or fails, with what it belongs to.
struct Printed;

impl Progress for Printed {
    fn event(&self, scope: &Scope, event: &Event) {
        let what = [
            scope.operation.map(|o| o.name().to_owned()),
            scope.source.clone(),
            scope.artifact.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        match event {
            Event::Started { phase, .. } => println!("   [{what}] {phase} started"),
            Event::Finished => println!("   [{what}] finished"),
            Event::Failed { message } => println!("   [{what}] FAILED: {message}"),
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let work = tempfile::tempdir().map_err(|e| Error::io("creating a work directory", e))?;
    let journal = work.path().join("audit.jsonl");
    let lines: String = (0..1000)
        .map(|i| {
            format!(
                "{{\"seq\":{i},\"event\":\"login\",\"user\":\"u{}\"}}\n",
                i % 37
            )
        })
        .collect();
    write(&journal, lines.as_bytes())?;

    println!("1. registering the journal kind beside the built-in ones");
    let mut registry = dr::registry();
    registry
        .register_source_type(Arc::new(journal::JournalFactory))
        .register_kind(Arc::new(journal::JournalKind));
    let settings = SourceSettings::new(serde_json::json!({ "path": journal }));
    let source = registry.build_source(journal::KIND, &settings)?;
    let system = System::new(registry).with_source(ConfiguredSource::new("audit", source));

    let identities = Identities::generate();
    let repo_dir = work.path().join("repo").display().to_string();
    let repo = dr::storage::init_repository(&repo_dir, &[], &identities.to_recipients())
        .await?
        .with_identities(identities);
    let progress = ProgressHandle::new(Arc::new(Printed));

    println!("2. backing it up through ops::backup");
    let made = backup(
        &repo,
        &system,
        &BackupRunOptions::source("audit"),
        &progress,
    )
    .await?;
    let id = made.sources[0]
        .id
        .clone()
        .ok_or_else(|| Error::Usage(format!("the backup failed: {:?}", made.sources[0].error)))?;
    println!("   backup {id}");

    println!("3. verifying it at restore level through ops::verify");
    let options = VerifyOptions::default()
        .with_target(Some("audit".into()))
        .with_level(VerifyLevel::Restore);
    let verified = verify(&repo, &system, &options, &progress).await?;
    let report = &verified.entries[0].report;
    assert!(verified.is_ok(), "verify failed: {:?}", report.problems);
    assert_eq!(report.level_performed, VerifyLevel::Restore);
    for line in &report.passed {
        println!("   ok {line}");
    }

    println!("4. a drill through ops::drill: a timed restore into scratch with the kind's checks");
    let drill_options = DrillOptions::default().with_target(DrillTarget::Source("audit".into()));
    let drilled = drill(&repo, &system, &drill_options, &progress).await?;
    assert!(
        drilled.is_success(),
        "the drill failed: {:?}",
        drilled.failure()
    );
    println!("   drill passed in {} ms", drilled.drills[0].record.rto_ms);

    println!("   and a bench through ops::bench: its restore to a null sink and into scratch");
    let bench_options = BenchOptions::default()
        .with_size_bytes(0)
        .with_restore(RestoreChoice::Backup("audit".into()));
    let timed = bench(&repo, &system, &bench_options, &progress).await?;
    for run in &timed.runs {
        println!(
            "   {:?}: {} bytes in {:.1} ms, {:.0} MB/s",
            run.phase, run.plain_bytes, run.elapsed_ms, run.mb_per_s
        );
    }
    assert_eq!(
        timed.runs.len(),
        2,
        "null sink and scratch target: {:?}",
        timed.notes
    );

    println!("5. a disaster: the journal is truncated; restoring through ops::restore");
    write(&journal, b"{\"seq\":0")?;
    let restored = restore(
        &repo,
        &system,
        &RestoreRunOptions::source("audit"),
        &progress,
    )
    .await?;
    if let Some(e) = restored.failure {
        return Err(e);
    }
    let back = std::fs::read(&journal).map_err(|e| Error::io("reading the journal", e))?;
    assert_eq!(back, lines.as_bytes(), "the restored journal differs");
    let kept = restored.restore.and_then(|r| r.previous_kept_at);
    println!("   restored byte for byte; the damaged file is kept at {kept:?}");
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
