//! `dr prune`.

use std::collections::BTreeMap;

use dr_core::retention::{Decision, RetentionItem, plan};
use serde_json::json;

use crate::app::App;
use crate::exit::{CliResult, Context};
use crate::output;

/// `dr prune [--dry-run]`: plans per source with its policy, prints every decision with its
/// reasons, then deletes what no rule keeps and orphans older than the grace period.
pub async fn prune(app: &App, dry_run: bool, orphan_grace: std::time::Duration) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let manifests = repo.list(None).await.doing(|| "listing backups".into())?;
    let now = chrono::Utc::now();
    let mut by_source: BTreeMap<&str, Vec<RetentionItem>> = BTreeMap::new();
    for m in &manifests {
        by_source
            .entry(m.source.as_str())
            .or_default()
            .push(RetentionItem::from(m));
    }
    let mut decisions: Vec<Decision> = Vec::new();
    for (source, items) in &by_source {
        decisions.extend(plan(items, app.config.retention_for(source), now).decisions);
    }
    let mut deleted = Vec::new();
    let mut orphans = Vec::new();
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            if let Some(m) = manifests
                .iter()
                .find(|m| m.id == d.id && m.source == d.source)
            {
                repo.delete(m)
                    .await
                    .doing(|| format!("deleting backup {} of {}", m.id, m.source))?;
                deleted.push(d.id.clone());
            }
        }
        let grace =
            chrono::TimeDelta::from_std(orphan_grace).unwrap_or(chrono::TimeDelta::hours(1));
        orphans = repo
            .remove_orphans(now - grace)
            .await
            .doing(|| "removing orphans".into())?;
    }
    if app.global.json {
        return output::json(
            &json!({ "dry_run": dry_run, "decisions": decisions, "deleted": deleted,
            "orphans_removed": orphans }),
        );
    }
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            let action = match (d.keep, dry_run) {
                (true, _) => "keep",
                (false, true) => "would delete",
                (false, false) => "deleted",
            };
            vec![
                d.source.clone(),
                d.id.clone(),
                d.time.format("%Y-%m-%d %H:%M").to_string(),
                action.into(),
                d.reasons.join(", "),
            ]
        })
        .collect();
    output::table(
        &["SOURCE", "ID", "STARTED (UTC)", "ACTION", "REASONS"],
        &rows,
    );
    let forgotten = decisions.iter().filter(|d| !d.keep).count();
    println!(
        "{} kept, {forgotten} {}; {} orphaned objects removed",
        decisions.len() - forgotten,
        if dry_run {
            "would be deleted (dry run)"
        } else {
            "deleted"
        },
        orphans.len()
    );
    Ok(())
}
