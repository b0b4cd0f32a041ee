//! How many parts a reader keeps in flight: enough fetches ahead that the decoders never wait
//! for the store, sized from what it measures (a far store's round trip against the time the
//! consumer takes per part), and never more stored bytes than the budget.
//!
//! On a local disk a fetch takes less than a part's decoding, so the depth stays at the
//! number of decoders, as before read-ahead existed; at 50 ms a round trip it grows until the
//! fetches in flight cover the round trip.

use std::time::Duration;

/// Weight of the newest measurement in the moving averages.
const NEWEST: f64 = 0.3;

/// The read-ahead depth of one artifact reader.
#[derive(Debug, Clone)]
pub(crate) struct Depth {
    decoders: usize,
    most: usize,
    fetch_s: Option<f64>,
    per_part_s: Option<f64>,
}

impl Depth {
    /// Depth for `decoders` parts decoded at once and at most `budget_bytes` of parts of
    /// `part_bytes` fetched ahead (never fewer than the decoders).
    pub(crate) fn new(decoders: usize, budget_bytes: u64, part_bytes: u64) -> Self {
        let decoders = decoders.max(1);
        let fit = usize::try_from(budget_bytes / part_bytes.max(1)).unwrap_or(usize::MAX);
        Depth {
            decoders,
            most: fit.max(decoders),
            fetch_s: None,
            per_part_s: None,
        }
    }

    /// Parts to keep in flight (being fetched or decoded) now.
    pub(crate) fn parts(&self) -> usize {
        let Some(fetch) = self.fetch_s else {
            // Nothing measured yet: the decoders, and one fetch ahead of them.
            return (self.decoders + 1).min(self.most);
        };
        let per_part = self.per_part_s.unwrap_or(fetch).max(1e-4);
        // Fetches take `fetch` each and overlap: covering a round trip at one part per
        // `per_part` takes fetch / per_part of them, on top of the parts being decoded.
        let ahead = (fetch / per_part).ceil() as usize;
        (self.decoders + ahead).clamp(self.decoders, self.most)
    }

    /// A fetch took `took`.
    pub(crate) fn fetched(&mut self, took: Duration) {
        self.fetch_s = Some(average(self.fetch_s, took.as_secs_f64()));
    }

    /// One part's decoding took `took` (with the other decoders busy beside it): the
    /// decoders' pace is one part per `took / decoders`. Their capacity, not the interval
    /// between parts, sizes the read-ahead: an interval measured while the decoders waited
    /// for fetches would size a shallow read-ahead that keeps them waiting.
    pub(crate) fn decoded(&mut self, took: Duration) {
        let per_part = took.as_secs_f64() / self.decoders as f64;
        self.per_part_s = Some(average(self.per_part_s, per_part));
    }
}

fn average(old: Option<f64>, newest: f64) -> f64 {
    old.map_or(newest, |o| o * (1.0 - NEWEST) + newest * NEWEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_local_store_keeps_the_decoders_busy_and_no_more() {
        let mut depth = Depth::new(2, 128 * MIB, 16 * MIB);
        assert_eq!(depth.parts(), 3);
        for _ in 0..10 {
            depth.fetched(Duration::from_millis(5));
            depth.decoded(Duration::from_millis(16));
        }
        assert_eq!(depth.parts(), 3);
    }

    #[test]
    fn a_far_store_gets_fetches_ahead_within_the_budget() {
        let mut depth = Depth::new(2, 128 * MIB, 16 * MIB);
        for _ in 0..10 {
            depth.fetched(Duration::from_millis(40));
            depth.decoded(Duration::from_millis(16));
        }
        assert_eq!(depth.parts(), 7);
        for _ in 0..10 {
            depth.fetched(Duration::from_millis(500));
        }
        assert_eq!(depth.parts(), 8, "128 MiB of 16 MiB parts");
        let tiny = Depth::new(4, MIB, 16 * MIB);
        assert_eq!(tiny.parts(), 4, "never fewer than the decoders");
    }
}
