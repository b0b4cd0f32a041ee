//! WAL positions, WAL file names and timeline history files, as PostgreSQL defines them.

use std::fmt;
use std::str::FromStr;

use dr_core::Error;
use dr_core::Refusal;
use serde::{Deserialize, Serialize};

/// A WAL position (`pg_lsn`), written `X/Y` in hexadecimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::refused(
                Refusal::InvalidInput,
                format!("{s:?} is not a WAL position (like 0/3000028)"),
            )
        };
        let (high, low) = s.trim().split_once('/').ok_or_else(bad)?;
        let high = u64::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u64::from_str_radix(low, 16).map_err(|_| bad())?;
        if high > u64::from(u32::MAX) || low > u64::from(u32::MAX) {
            return Err(bad());
        }
        Ok(Lsn(high << 32 | low))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A WAL segment: its timeline and number (position / segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    /// Timeline id.
    pub timeline: u32,
    /// Segment number (WAL position divided by the segment size).
    pub number: u64,
}

impl Segment {
    /// The segment holding `lsn` on `timeline`.
    pub fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.0 / segment_size.max(1),
        }
    }

    /// The 24-character file name (`TTTTTTTTXXXXXXXXYYYYYYYY`).
    pub fn file_name(&self, segment_size: u64) -> String {
        let per_id = segments_per_id(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_id,
            self.number % per_id
        )
    }

    /// Parses a segment file name; `None` for history, backup label and partial files.
    pub fn parse(name: &str, segment_size: u64) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..], 16).ok()?;
        Some(Segment {
            timeline,
            number: log * segments_per_id(segment_size) + seg,
        })
    }

    /// The WAL position where this segment starts.
    pub fn start(&self, segment_size: u64) -> Lsn {
        Lsn(self.number * segment_size)
    }
}

fn segments_per_id(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size.clamp(1, 0x1_0000_0000)
}

/// The name of a timeline's history file, e.g. `00000002.history`.
pub fn history_file_name(timeline: u32) -> String {
    format!("{timeline:08X}.history")
}

/// One line of a timeline history file: `parent` ended at `switchpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSwitch {
    /// The timeline that was left.
    pub parent: u32,
    /// Where the next timeline branched off it.
    pub switchpoint: Lsn,
}

/// Parses a history file (`parentTLI<TAB>switchpoint<TAB>reason` lines, `#` comments).
///
/// # Errors
/// [`Error::Backend`] for a malformed line.
pub fn parse_history(text: &str) -> Result<Vec<TimelineSwitch>, Error> {
    let mut switches = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parent = fields.next().and_then(|p| p.parse().ok());
        let switchpoint = fields.next().and_then(|l| l.parse().ok());
        match (parent, switchpoint) {
            (Some(parent), Some(switchpoint)) => switches.push(TimelineSwitch {
                parent,
                switchpoint,
            }),
            _ => {
                return Err(Error::invalid_data(
                    "timeline history",
                    format!("malformed line {line:?}"),
                ));
            }
        }
    }
    Ok(switches)
}

/// The timeline PostgreSQL reads segment `number` from when it replays towards `timeline`
/// whose ancestors are `history`: the newest timeline that began at or before that segment
/// (the segment holding a switch point is read from the new timeline).
pub fn timeline_of_segment(
    number: u64,
    timeline: u32,
    history: &[TimelineSwitch],
    segment_size: u64,
) -> u32 {
    // history[i] says: timeline history[i].parent ended at switchpoint, the next one began.
    let mut chosen = timeline;
    for (i, switch) in history.iter().enumerate().rev() {
        let began_at = switch.switchpoint.0 / segment_size.max(1);
        if number >= began_at {
            return chosen;
        }
        chosen = history[i].parent;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 * 1024 * 1024;

    #[test]
    fn lsn_round_trips_and_rejects_garbage() {
        let lsn: Lsn = "1/A000028".parse().unwrap();
        assert_eq!(lsn.0, 0x1_0A00_0028);
        assert_eq!(lsn.to_string(), "1/A000028");
        assert!("1A000028".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
        assert!("100000000/0".parse::<Lsn>().is_err());
    }

    #[test]
    fn segment_names_match_postgres() {
        let lsn: Lsn = "1/A000028".parse().unwrap();
        let segment = Segment::containing(2, lsn, MB16);
        assert_eq!(segment.file_name(MB16), "00000002000000010000000A");
        assert_eq!(
            Segment::parse("00000002000000010000000A", MB16),
            Some(segment)
        );
        assert_eq!(segment.start(MB16).to_string(), "1/A000000");
        assert_eq!(Segment::parse("00000002.history", MB16), None);
        assert_eq!(
            Segment::parse("000000010000000000000002.00000028.backup", MB16),
            None
        );
        // 1 GiB segments: 4 per log id.
        let big = 1 << 30;
        assert_eq!(
            Segment {
                timeline: 1,
                number: 5
            }
            .file_name(big),
            "000000010000000100000001"
        );
    }

    #[test]
    fn history_decides_the_timeline_of_each_segment() {
        let text = "1\t0/5000100\tbefore 2026-11-23 12:00:00+00\n\n2\t0/9000000\tno recovery target specified\n";
        let history = parse_history(text).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(timeline_of_segment(4, 3, &history, MB16), 1);
        assert_eq!(timeline_of_segment(5, 3, &history, MB16), 2);
        assert_eq!(timeline_of_segment(8, 3, &history, MB16), 2);
        assert_eq!(timeline_of_segment(9, 3, &history, MB16), 3);
        assert_eq!(timeline_of_segment(7, 1, &[], MB16), 1);
        assert!(parse_history("1 nonsense").is_err());
    }
}
