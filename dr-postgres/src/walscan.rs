//! Reading one WAL segment's records far enough to know which moments recovery can reach:
//! the transaction records (commits and aborts, which carry the time `recovery_target_time`
//! compares with) and where the last complete record starts.
//!
//! The layout is PostgreSQL's (`access/xlog_internal.h`, `access/xlogrecord.h`, the same
//! since 9.5): pages of `XLOG_BLCKSZ` bytes, each with a header (the first page of a segment
//! a long one), records MAXALIGNed, headers possibly split across pages. A record counts only
//! when it is complete in this segment, its `xl_prev` points at the record before it and its
//! CRC-32C matches, the checks PostgreSQL itself uses to find the end of WAL; a record that
//! continues into the next segment is not counted here (nor in the next segment, which sees
//! only its tail): the summary may understate how far a segment reaches, never overstate it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

/// A transaction record: where it starts and the time it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XactPoint {
    /// The record's start.
    pub lsn: Lsn,
    /// Its commit (or abort) time.
    pub time: DateTime<Utc>,
}

/// What recovery can reach within one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// The last commit or abort record complete in the segment.
    pub last_xact: Option<XactPoint>,
    /// The newest commit or abort time in the segment (times are not strictly ordered).
    pub max_xact_time: Option<DateTime<Utc>>,
    /// The start of the last record complete in the segment.
    pub last_record: Option<Lsn>,
}

const SHORT_HEADER: usize = 24;
const LONG_HEADER: usize = 40;
const RECORD_HEADER: usize = 24;
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const XLOG_SWITCH: u8 = 0x40;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Summarises a complete WAL segment file; `None` when it is not one this reader
/// understands (then nothing is claimed about it).
pub fn summarize(segment: &[u8]) -> Option<SegmentSummary> {
    let stream = Stream::strip(segment)?;
    let mut summary = SegmentSummary {
        last_xact: None,
        max_xact_time: None,
        last_record: None,
    };
    let mut pos = stream.first_record;
    let mut prev: Option<u64> = None;
    while let Some(record) = stream.record_at(pos, prev) {
        let lsn = stream.lsn_of(pos)?;
        if let Some(time) = xact_time(record) {
            summary.last_xact = Some(XactPoint {
                lsn: Lsn(lsn),
                time,
            });
            summary.max_xact_time = summary.max_xact_time.max(Some(time));
        }
        summary.last_record = Some(Lsn(lsn));
        if record[17] == RM_XLOG_ID && record[16] & 0xF0 == XLOG_SWITCH {
            break;
        }
        prev = Some(lsn);
        pos = maxalign(pos + record.len());
    }
    Some(summary)
}

/// The segment's record bytes with the page headers taken out.
struct Stream {
    data: Vec<u8>,
    /// Per page: where its data starts in `data`, and at which WAL position.
    pages: Vec<(usize, u64)>,
    first_record: usize,
}

impl Stream {
    fn strip(segment: &[u8]) -> Option<Stream> {
        let magic = u16_at(segment, 0)?;
        let info = u16_at(segment, 2)?;
        let start = u64_at(segment, 8)?;
        let seg_size = u32_at(segment, 32)? as usize;
        let block = u32_at(segment, 36)? as usize;
        let sane = info & XLP_LONG_HEADER != 0
            && seg_size == segment.len()
            && block.is_power_of_two()
            && (1024..=65536).contains(&block)
            && seg_size.is_multiple_of(block)
            && start.is_multiple_of(seg_size as u64);
        if !sane {
            return None;
        }
        let mut stream = Stream {
            data: Vec::with_capacity(segment.len()),
            pages: Vec::new(),
            first_record: 0,
        };
        for (i, page) in segment.chunks(block).enumerate() {
            let address = start + (i * block) as u64;
            let header = if i == 0 { LONG_HEADER } else { SHORT_HEADER };
            if u16_at(page, 0)? != magic || u64_at(page, 8)? != address {
                break;
            }
            stream
                .pages
                .push((stream.data.len(), address + header as u64));
            stream.data.extend_from_slice(page.get(header..)?);
        }
        if info & XLP_FIRST_IS_CONTRECORD != 0 {
            stream.first_record = maxalign(u32_at(segment, 16)? as usize);
        }
        Some(stream)
    }

    /// The WAL position of byte `pos` of the stream.
    fn lsn_of(&self, pos: usize) -> Option<u64> {
        let index = self.pages.partition_point(|(off, _)| *off <= pos);
        let (off, lsn) = self.pages.get(index.checked_sub(1)?)?;
        Some(lsn + (pos - off) as u64)
    }

    /// The complete, valid record at `pos` (following the record at `prev`), if any.
    fn record_at(&self, pos: usize, prev: Option<u64>) -> Option<&[u8]> {
        let header = self.data.get(pos..pos + RECORD_HEADER)?;
        let total = u32_at(header, 0)? as usize;
        if total < RECORD_HEADER {
            return None;
        }
        let record = self.data.get(pos..pos.checked_add(total)?)?;
        if prev.is_some_and(|p| u64_at(record, 8) != Some(p)) {
            return None;
        }
        let mut digest = CRC32C.digest();
        digest.update(&record[RECORD_HEADER..]);
        digest.update(&record[..20]);
        (Some(digest.finalize()) == u32_at(record, 20)).then_some(record)
    }
}

/// The time of a commit or abort record (plain or of a prepared transaction).
fn xact_time(record: &[u8]) -> Option<DateTime<Utc>> {
    const OPMASK: u8 = 0x70;
    const TIMED: [u8; 4] = [0x00, 0x20, 0x30, 0x40];
    if record[17] != RM_XACT_ID || !TIMED.contains(&(record[16] & OPMASK)) {
        return None;
    }
    let main = main_data(record)?;
    let micros = i64::from_le_bytes(main.get(..8)?.try_into().ok()?);
    let epoch = DateTime::<Utc>::from_timestamp(946_684_800, 0)?;
    epoch.checked_add_signed(TimeDelta::microseconds(micros))
}

/// The main data of a record without block references (transaction records have none;
/// anything else is not read).
fn main_data(record: &[u8]) -> Option<&[u8]> {
    let mut p = RECORD_HEADER;
    loop {
        let id = *record.get(p)?;
        p += 1;
        let len = match id {
            255 => usize::from(*record.get(p)?),
            254 => u32_at(record, p)? as usize,
            253 => {
                p += 2;
                continue;
            }
            252 => {
                p += 4;
                continue;
            }
            _ => return None,
        };
        return record.get(record.len().checked_sub(len)?..);
    }
}

fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_segment_claims_nothing() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(&[0u8; 16 << 10]), None);
        let mut page = vec![0u8; 8192];
        page[2] = XLP_LONG_HEADER as u8;
        page[32..36].copy_from_slice(&(8192u32).to_le_bytes());
        page[36..40].copy_from_slice(&(8192u32).to_le_bytes());
        let summary = summarize(&page).unwrap();
        assert_eq!(summary.last_xact, None, "zeros hold no record");
        assert_eq!(summary.last_record, None);
    }
}
