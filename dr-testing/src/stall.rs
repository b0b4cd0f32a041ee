//! Stall detection: runs an operation beside a 10 ms ticker on the same runtime and fails
//! when a tick comes more than [`MAX_LATE`] late: a blocked runtime thread, not a slow
//! machine (the bound is generous for a busy CI host).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How late a tick may come before the runtime counts as blocked.
pub const MAX_LATE: Duration = Duration::from_millis(500);
const TICK: Duration = Duration::from_millis(10);

/// Runs `operation` beside the ticker and returns its output.
///
/// # Panics
/// When a tick was more than [`MAX_LATE`] late while `operation` ran, naming `what` and the
/// worst delay. Run it on a current-thread runtime (`#[tokio::test]`) or with one worker
/// (`flavor = "multi_thread", worker_threads = 1`) so a blocking call cannot hide on
/// another worker.
pub async fn assert_no_stall<F: Future>(what: &str, operation: F) -> F::Output {
    let worst_ms = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let worst_ms = worst_ms.clone();
        let done = done.clone();
        async move {
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(TICK).await;
                let late = last.elapsed().saturating_sub(TICK);
                worst_ms.fetch_max(late.as_millis() as u64, Ordering::Relaxed);
                last = Instant::now();
            }
        }
    });
    // Let the ticker start before the operation can block.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let output = operation.await;
    done.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    let worst = Duration::from_millis(worst_ms.load(Ordering::Relaxed));
    assert!(
        worst <= MAX_LATE,
        "{what} blocked the async runtime: a 10 ms ticker beside it was {worst:?} late (allowed {MAX_LATE:?}); move blocking work to spawn_blocking"
    );
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blocking_sleep_is_caught() {
        let caught = tokio::spawn(async {
            assert_no_stall("sleeping", async {
                std::thread::sleep(Duration::from_millis(900));
            })
            .await;
        })
        .await;
        assert!(caught.is_err(), "a 900 ms blocking sleep was not noticed");
    }

    #[tokio::test]
    async fn spawn_blocking_passes() {
        assert_no_stall("sleeping in spawn_blocking", async {
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(900)))
                .await
                .unwrap();
        })
        .await;
    }
}
