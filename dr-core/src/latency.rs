//! An `ObjectStore` wrapper that behaves like a store far away: every request waits a fixed
//! delay before it starts (the round trip), and each request's body moves at most at a
//! per-request bandwidth (one connection's throughput; parallel requests each get their own,
//! as with S3). `dr bench --latency` restores through it to project a restore from a store
//! farther away than the one at hand; benches and tests use it to measure how dr hides
//! latency (benches/latency.rs).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Keys per LIST page (S3's ListObjectsV2): each page costs one round trip.
const LIST_PAGE: usize = 1000;

/// The delay and bandwidth of a simulated distant store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Waited before every request (and every further LIST page).
    pub delay: Duration,
    /// Bytes per second of one request's body; `None`: unlimited.
    pub bandwidth: Option<u64>,
}

impl Latency {
    /// A round trip of `ms` milliseconds, unlimited bandwidth.
    pub fn ms(ms: u64) -> Self {
        Self::delay(Duration::from_millis(ms))
    }

    /// A round trip of `delay`, unlimited bandwidth.
    pub fn delay(delay: Duration) -> Self {
        Latency {
            delay,
            bandwidth: None,
        }
    }

    /// With each request's body limited to `bytes_per_second`.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bandwidth = Some(bytes_per_second.max(1));
        self
    }

    /// How long `bytes` take at the bandwidth.
    fn transfer(&self, bytes: usize) -> Duration {
        self.bandwidth.map_or(Duration::ZERO, |bw| {
            Duration::from_secs_f64(bytes as f64 / bw as f64)
        })
    }

    async fn round_trip(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

/// Passes every call to the inner store after the delay, at the bandwidth.
#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    latency: Latency,
}

impl LatencyStore {
    /// `inner`, with `latency` added to every request.
    pub fn new(inner: Arc<dyn ObjectStore>, latency: Latency) -> Self {
        LatencyStore { inner, latency }
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyStore({:?}, {})", self.latency, self.inner)
    }
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.latency.round_trip().await;
        tokio::time::sleep(self.latency.transfer(payload.content_length())).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.latency.round_trip().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.latency.round_trip().await;
        let result = self.inner.get_opts(location, options).await?;
        if self.latency.bandwidth.is_none() {
            return Ok(result);
        }
        let (meta, range, attributes, extensions) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
            result.extensions.clone(),
        );
        let latency = self.latency;
        let paced = result
            .into_stream()
            .and_then(move |chunk: Bytes| async move {
                tokio::time::sleep(latency.transfer(chunk.len())).await;
                Ok(chunk)
            })
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(paced),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.latency.round_trip().await;
        let bytes = self.inner.get_ranges(location, ranges).await?;
        let total: usize = bytes.iter().map(Bytes::len).sum();
        tokio::time::sleep(self.latency.transfer(total)).await;
        Ok(bytes)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let latency = self.latency;
        let delayed = locations
            .then(move |item| async move {
                latency.round_trip().await;
                item
            })
            .boxed();
        self.inner.delete_stream(delayed)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let latency = self.latency;
        let mut seen = 0usize;
        self.inner
            .list(prefix)
            .then(move |item| {
                let first_of_page = seen.is_multiple_of(LIST_PAGE);
                seen += 1;
                async move {
                    if first_of_page {
                        latency.round_trip().await;
                    }
                    item
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.latency.round_trip().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.latency.round_trip().await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn each_request_waits_and_parallel_requests_overlap() {
        let store = LatencyStore::new(Arc::new(InMemory::new()), Latency::ms(50));
        let key = Path::from("a");
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let gets = (0..4).map(|_| async { store.get(&key).await.unwrap().bytes().await });
        futures::future::join_all(gets).await;
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        // One after the other would take at least 4 x 50 ms.
        assert!(
            elapsed < Duration::from_millis(200),
            "serialised: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn the_bandwidth_paces_a_body() {
        let latency = Latency::ms(0).with_bandwidth(1_000_000);
        let store = LatencyStore::new(Arc::new(InMemory::new()), latency);
        let key = Path::from("b");
        let body = vec![7u8; 200_000];
        store
            .put(&key, PutPayload::from(body.clone()))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let read = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(read.len(), body.len());
        assert!(started.elapsed() >= Duration::from_millis(190));
    }
}
