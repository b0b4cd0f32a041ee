//! Progress reporting: the library reports, front ends draw.

/// Receives progress of a long operation. The library never prints; a CLI draws bars from
/// these calls, a service may export them as metrics. Implementations must be cheap: they are
/// called once per part.
pub trait Progress: Send + Sync {
    /// A new stage started (e.g. `backup db`, `restore db`); `total_bytes` when known.
    fn stage(&self, name: &str, total_bytes: Option<u64>);
    /// `bytes` more plain bytes were processed in the current stage.
    fn advance(&self, bytes: u64);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total_bytes: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
}
