//! File-system work off the async runtime: walks, reads and writes of trees, fsyncs,
//! renames, xattrs and owners run on tokio's blocking pool, never on a runtime thread (a
//! restore of many files would otherwise stall every other task of the runtime).

use dr_core::{Error, Result};

/// Runs `work` on the blocking pool; `what` names it if the task panics.
///
/// # Errors
/// The error of `work`, or an I/O error naming `what` when the task panicked or was
/// cancelled.
pub(crate) async fn blocking<T, F>(what: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io(what.to_owned(), std::io::Error::other(e.to_string())))?
}

/// Drops `value` (a staging directory whose drop removes a partial tree) on the blocking
/// pool.
pub(crate) async fn drop_blocking<T: Send + 'static>(value: T) {
    let _ = tokio::task::spawn_blocking(move || drop(value)).await;
}
