//! An `ObjectStore` wrapper that fails chosen calls, like `object_store::limit::LimitStore`
//! wraps one to limit it.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Fails every `put` from the `fail_put_from`-th on (counting from 1), and every `get` from
/// the `fail_get_from`-th on (permanent faults); fails every `n`-th put, get, list or delete
/// once (transient faults: the repeated call passes); delays every put by `put_delay` (a slow
/// upload); everything else passes through.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    puts: AtomicUsize,
    gets: AtomicUsize,
    others: AtomicUsize,
    fail_put_from: usize,
    fail_get_from: usize,
    every_nth: usize,
    put_delay: std::time::Duration,
    fail_gets_of: Option<String>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            puts: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            others: AtomicUsize::new(0),
            fail_put_from: usize::MAX,
            fail_get_from: usize::MAX,
            every_nth: usize::MAX,
            put_delay: std::time::Duration::ZERO,
            fail_gets_of: None,
        }
    }

    /// Fails every `n`-th put, get, list and delete (each counted on its own) once.
    pub fn fail_every_nth(mut self, n: usize) -> Self {
        self.every_nth = n.max(2);
        self
    }

    /// Delays every put (a slow upload).
    pub fn with_put_delay(mut self, delay: std::time::Duration) -> Self {
        self.put_delay = delay;
        self
    }

    /// Counts a call on `counter`: `Err` when it is to fail (permanently from `from`, or
    /// transiently every n-th).
    async fn call(&self, counter: &AtomicUsize, from: usize, op: &str) -> Result<()> {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= from || n.is_multiple_of(self.every_nth) {
            return Err(Self::injected(op));
        }
        Ok(())
    }

    pub fn fail_put_from(mut self, n: usize) -> Self {
        self.fail_put_from = n;
        self
    }

    /// Fails every get of the object whose key is `key` (a GET that fails after every retry).
    pub fn fail_gets_of(mut self, key: impl Into<String>) -> Self {
        self.fail_gets_of = Some(key.into());
        self
    }

    pub fn fail_get_from(mut self, n: usize) -> Self {
        self.fail_get_from = n;
        self
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }

    fn injected(op: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "FaultyStore",
            source: format!("injected failure on {op}").into(),
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.call(&self.puts, self.fail_put_from, "put").await?;
        let written = self.inner.put_opts(location, payload, opts).await;
        tokio::time::sleep(self.put_delay).await;
        written
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.call(&self.gets, self.fail_get_from, "get").await?;
        if self.fail_gets_of.as_deref() == Some(location.as_ref()) {
            return Err(Self::injected("get"));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let n = self.others.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every_nth) {
            return futures::stream::once(async { Err(Self::injected("delete")) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let n = self.others.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every_nth) {
            return futures::stream::once(async { Err(Self::injected("list")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
