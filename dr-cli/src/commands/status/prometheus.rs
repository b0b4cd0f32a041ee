//! `dr status --prometheus`: the report in the OpenMetrics text format, encoded by the
//! `prometheus-client` crate (Prometheus and node_exporter's textfile collector read it), one
//! gauge per figure and source. The metric names, types, help texts and labels are an
//! interface (dashboards, the alerts in examples/deploy, the README): never rename one.
//!
//! The figures are computed per scrape from a [`StatusReport`], so they are encoded by a
//! [`Collector`] rather than kept in long-lived gauges: sources appear in the report's order
//! (the crate's label families are hash maps), and a figure that is not known (no drill yet)
//! is left out instead of being reported as 0.

use chrono::{DateTime, Utc};
use dr_core::ops::status::StatusReport;
use dr_core::status::SourceStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s output, for HTTP responses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One gauge: name, help text, and its value for a source (none: not exported).
type Gauge = (&'static str, &'static str, fn(&SourceStatus) -> Option<f64>);

/// Every per-source gauge `dr status --prometheus` exports, in the order exported.
const GAUGES: [Gauge; 17] = [
    (
        "dr_backup_last_success_timestamp_seconds",
        "When the newest backup finished (Unix time).",
        |s| unix(s.last_backup_at),
    ),
    (
        "dr_recoverable_until_timestamp_seconds",
        "The newest moment one can recover to (Unix time).",
        |s| unix(s.recoverable_until),
    ),
    (
        "dr_backup_last_bytes",
        "Plain size of the newest backup.",
        |s| s.last_backup_bytes.map(|b| b as f64),
    ),
    (
        "dr_backup_last_stored_bytes",
        "Stored (compressed, encrypted) size of the newest backup.",
        |s| s.last_backup_stored_bytes.map(|b| b as f64),
    ),
    (
        "dr_backup_last_duration_seconds",
        "How long the newest backup took.",
        |s| s.last_backup_duration_s,
    ),
    (
        "dr_rpo_seconds",
        "Data that would be lost now: seconds since the newest recoverable point.",
        |s| s.rpo_now_s,
    ),
    (
        "dr_drill_last_timestamp_seconds",
        "When the newest drill started (Unix time).",
        |s| unix(s.last_drill_at),
    ),
    (
        "dr_drill_last_success",
        "1 when the newest drill passed, 0 when it failed.",
        |s| s.last_drill_passed.map(|p| f64::from(u8::from(p))),
    ),
    (
        "dr_drill_last_rto_seconds",
        "Measured RTO of the newest drill.",
        |s| s.last_drill_rto_s,
    ),
    (
        "dr_drill_last_rpo_seconds",
        "Measured RPO of the newest drill.",
        |s| s.last_drill_rpo_s,
    ),
    (
        "dr_status_problems",
        "Problems dr status reports (0: all is well).",
        |s| Some(s.problems.len() as f64),
    ),
    ("dr_rpo_objective_seconds", "The RPO objective.", |s| {
        s.objectives.rpo.map(|d| d.as_secs_f64())
    }),
    ("dr_rto_objective_seconds", "The RTO objective.", |s| {
        s.objectives.rto.map(|d| d.as_secs_f64())
    }),
    (
        "dr_drill_every_seconds",
        "The drill objective: at most this long between drills.",
        |s| s.objectives.drill_every.map(|d| d.as_secs_f64()),
    ),
    (
        "dr_backup_failures_since_last_success",
        "Recorded backup failures after the newest backup (all of them without one).",
        |s| Some(s.failures_since_last_backup as f64),
    ),
    (
        "dr_wal_archive_recoverable_until_timestamp_seconds",
        "The newest moment the continuous (WAL) archive lets one recover to (Unix time).",
        |s| unix(s.archive.as_ref().and_then(|a| a.recoverable_until)),
    ),
    (
        "dr_wal_archive_problems",
        "Gaps and damage in the continuous (WAL) archive (0: none).",
        |s| s.archive.as_ref().map(|a| a.problems.len() as f64),
    ),
];

const COPY_GAUGE: (&str, &str) = (
    "dr_copy_has_newest_backup",
    "1 when the copy holds the source's newest backup, 0 when not or unreadable.",
);

const STATUS_GAUGE: (&str, &str) = (
    "dr_status_timestamp_seconds",
    "When this status was computed (Unix time).",
);

/// The report in the OpenMetrics text format (ending with `# EOF`), which Prometheus and
/// node_exporter's textfile collector read.
pub fn render(report: &StatusReport) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatusCollector(report.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        // Writing into a String does not fail; the collector only passes its errors on.
        tracing::error!("encoding the metrics failed: {e}");
    }
    out
}

/// Encodes one [`StatusReport`] on each scrape.
#[derive(Debug)]
struct StatusCollector(StatusReport);

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = &self.0.sources;
        for (name, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in sources {
                if let Some(v) = value(s) {
                    gauge(&mut family, &[("source", s.source.as_str())], v)?;
                }
            }
        }
        self.encode_copies(&mut encoder)?;
        let (name, help) = STATUS_GAUGE;
        let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        number(family, unix(Some(self.0.computed_at)).unwrap_or_default())
    }
}

impl StatusCollector {
    fn encode_copies(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (name, help) = COPY_GAUGE;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &self.0.sources {
            for (destination, holds) in &s.copies {
                let labels = [
                    ("source", s.source.as_str()),
                    ("destination", destination.as_str()),
                ];
                gauge(
                    &mut family,
                    &labels,
                    f64::from(u8::from(*holds == Some(true))),
                )?;
            }
        }
        Ok(())
    }
}

/// One sample of a labelled gauge (the crate escapes the label values).
fn gauge(
    family: &mut MetricEncoder,
    labels: &[(&str, &str)],
    value: f64,
) -> Result<(), std::fmt::Error> {
    number(family.encode_family(&labels)?, value)
}

/// Whole numbers (sizes, counts, whole seconds) are written without a fraction, as before
/// the crate encoded them, so that the values read the same.
fn number(mut sample: MetricEncoder, value: f64) -> Result<(), std::fmt::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every whole f64 below is exact
    if value.fract() == 0.0 && value.abs() < EXACT {
        sample.encode_gauge(&(value as i64))
    } else {
        sample.encode_gauge(&value)
    }
}

fn unix(t: Option<DateTime<Utc>>) -> Option<f64> {
    t.map(|t| t.timestamp_millis() as f64 / 1000.0)
}
