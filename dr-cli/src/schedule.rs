//! `[[schedules]]` in dr.toml: when `dr daemon` runs what. Cron expressions are read in UTC by
//! croner (five fields, or six with seconds first).

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

use crate::exit::{CliError, CliResult};

/// One `[[schedules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Shown in logs.
    pub name: String,
    /// When, in UTC: `0 2 * * *` (02:00 daily), `0 2 * * SUN`, `0 2 1 * *`; a sixth field in
    /// front gives seconds (`*/10 * * * * *`).
    pub cron: String,
    /// One source; or `group`; neither: every source as one recovery point.
    pub source: Option<String>,
    /// A group of `[groups]`, backed up as one recovery point.
    pub group: Option<String>,
    /// Labels given to the backups (retention can keep by label).
    #[serde(default)]
    pub labels: Vec<String>,
    /// After the backup: `none`, `quick`, `checksums` (default) or `restore`.
    #[serde(default = "checksums")]
    pub verify: String,
    /// After verifying: apply the retention policies (default true).
    #[serde(default = "yes")]
    pub prune: bool,
    /// After the backup: copy it to the configured copies.
    #[serde(default)]
    pub copy: bool,
    /// Start up to this much later than the cron time, at random, so that many hosts on
    /// one schedule do not all hit the store at once (`5m`).
    #[serde(default, with = "humantime_serde_opt")]
    pub jitter: Option<Duration>,
}

/// `[daemon]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Serve `dr status --prometheus` at `http://ADDRESS/metrics` (e.g. `127.0.0.1:9464`).
    pub metrics: Option<String>,
    /// How long SIGTERM waits for running runs before abandoning them (default 60s; an
    /// abandoned backup commits nothing, its parts are orphans `dr prune` removes).
    #[serde(default, with = "humantime_serde_opt")]
    pub stop_timeout: Option<Duration>,
}

/// A schedule with its parsed cron expression.
pub struct Schedule {
    /// The configuration.
    pub config: ScheduleConfig,
    cron: Cron,
}

impl Schedule {
    /// Parses the cron expression.
    pub fn parse(config: ScheduleConfig) -> CliResult<Schedule> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&config.cron)
            .map_err(|e| {
                CliError::usage(format!(
                    "schedule {:?}: cron {:?} does not parse ({e}); e.g. \"0 2 * * *\" for 02:00 UTC daily",
                    config.name, config.cron
                ))
            })?;
        if config.source.is_some() && config.group.is_some() {
            return Err(CliError::usage(format!(
                "schedule {:?}: give `source` or `group`, not both",
                config.name
            )));
        }
        config.verify.parse::<dr_core::VerifyLevel>().or_else(|e| {
            if config.verify == "none" {
                Ok(dr_core::VerifyLevel::Quick)
            } else {
                Err(CliError::from(e))
            }
        })?;
        Ok(Schedule { config, cron })
    }

    /// The first time after `after` this schedule fires, plus a random jitter.
    pub fn next_after(&self, after: DateTime<Utc>) -> CliResult<DateTime<Utc>> {
        let at = self.cron.find_next_occurrence(&after, false).map_err(|e| {
            CliError::usage(format!(
                "schedule {:?}: no next time for {:?} ({e})",
                self.config.name, self.config.cron
            ))
        })?;
        let jitter = self.config.jitter.unwrap_or_default();
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            jitter.mul_f64(rand::random::<f64>())
        };
        Ok(at + chrono::TimeDelta::from_std(extra).unwrap_or_default())
    }
}

fn checksums() -> String {
    "checksums".into()
}

fn yes() -> bool {
    true
}

/// Serde for optional durations written as humantime strings.
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, jitter: Option<&str>) -> CliResult<Schedule> {
        let text = format!(
            "name = \"t\"\ncron = \"{cron}\"\n{}",
            jitter
                .map(|j| format!("jitter = \"{j}\"\n"))
                .unwrap_or_default()
        );
        Schedule::parse(toml::from_str(&text).unwrap())
    }

    #[test]
    fn cron_times_are_utc_and_seconds_are_optional() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let nightly = schedule("0 2 * * *", None).unwrap();
        assert_eq!(
            nightly.next_after(at("2026-11-23T12:30:00Z")).unwrap(),
            at("2026-11-24T02:00:00Z")
        );
        let sunday = schedule("0 2 * * SUN", None).unwrap();
        assert_eq!(
            sunday.next_after(at("2026-11-24T00:00:00Z")).unwrap(),
            at("2026-11-29T02:00:00Z")
        );
        let every_5s = schedule("*/5 * * * * *", None).unwrap();
        assert_eq!(
            every_5s.next_after(at("2026-11-23T12:30:01Z")).unwrap(),
            at("2026-11-23T12:30:05Z")
        );
    }

    #[test]
    fn jitter_delays_within_its_bound_and_bad_input_is_refused() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T12:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let jittered = schedule("0 3 * * *", Some("10m")).unwrap();
        for _ in 0..50 {
            let next = jittered.next_after(at).unwrap();
            let offset = (next - at).num_seconds() - 14 * 3600 - 30 * 60;
            assert!((0..600).contains(&offset), "{offset}");
        }
        assert!(schedule("61 * * * *", None).is_err());
        assert!(schedule("* * *", None).is_err());
    }
}
