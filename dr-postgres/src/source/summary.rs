//! What a PostgreSQL restore did, in words: the `summary` lines of its report.

use dr_core::human_size;

use crate::globals::GlobalsOutcome;
use crate::pitr::{self, PitrPlan};

/// The roles a restore applied on `server` from backup `id`.
pub(crate) fn roles(id: &str, server: &str, outcome: &GlobalsOutcome) -> Vec<String> {
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let passwords = if outcome.created.is_empty() {
        ""
    } else if outcome.passwords_restored {
        " (with their passwords)"
    } else {
        " (without passwords: --with-role-passwords restores them, or set them with ALTER ROLE ... PASSWORD)"
    };
    let mut lines = vec![
        format!("roles of backup {id} on {server}:"),
        format!("  created: {}{passwords}", list(&outcome.created)),
        format!(
            "  already there, left as they are: {}",
            list(&outcome.existing)
        ),
        format!("  memberships granted: {}", list(&outcome.memberships)),
    ];
    lines.extend(
        outcome
            .skipped
            .iter()
            .map(|skipped| format!("  not applied: {skipped}")),
    );
    lines
}

/// What a point-in-time recovery reads: base backup, WAL, timelines, download, reach.
pub(crate) fn plan(plan: &PitrPlan) -> Vec<String> {
    let mut lines = vec![
        format!("recover {} to {}", plan.source, plan.target),
        format!(
            "  base backup {} (ended {} at WAL {} on timeline {}), {} stored",
            plan.base_backup,
            plan.base.stop_time.format("%Y-%m-%d %H:%M:%S"),
            plan.base.stop_lsn,
            plan.base.timeline,
            human_size(plan.base_stored_bytes)
        ),
    ];
    lines.push(match (plan.wal.first(), plan.wal.last()) {
        (Some(first), Some(last)) => format!(
            "  WAL {} .. {} ({} files, {} stored), ending on timeline {}",
            first.name,
            last.name,
            plan.wal.len(),
            human_size(plan.wal.iter().map(|f| f.stored_size).sum()),
            plan.timeline
        ),
        _ => "  WAL: only what the base backup holds".into(),
    });
    if !plan.history_files.is_empty() {
        lines.push(format!(
            "  timeline history {}",
            plan.history_files.join(", ")
        ));
    }
    lines.push(format!("  download {}", human_size(plan.download_bytes)));
    if let Some(until) = plan.recoverable_until {
        lines.push(format!(
            "  the archive reaches {} (its last transaction)",
            pitr::exact_time(until)
        ));
    }
    lines
}

/// How a recovery ended: promoted (and where it stopped), or configured for a start.
pub(crate) fn recovery(promoted: bool, stopped: Option<&str>) -> Option<String> {
    match (stopped, promoted) {
        (Some(stopped), true) => Some(format!("recovered and promoted: {stopped}")),
        (None, true) => Some("recovered and promoted".into()),
        _ => None,
    }
}
