//! An `ObjectStore` wrapper that counts requests by kind, to measure what an operation costs
//! against a real store (benches/listing.rs, the manifest cache tests).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Keys per LIST page of S3's ListObjectsV2 (and of moto): `list` pages are derived from it.
pub const S3_LIST_PAGE: u64 = 1000;

/// Requests seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `list` calls (each one or more pages).
    pub lists: u64,
    /// Objects those lists returned.
    pub listed_objects: u64,
    /// LIST pages at [`S3_LIST_PAGE`] keys a page (at least one per `list` call).
    pub list_pages: u64,
    /// GETs (including HEADs, which object_store sends as `get_opts` with `head`).
    pub gets: u64,
    /// PUTs.
    pub puts: u64,
    /// Deletes.
    pub deletes: u64,
}

impl Counts {
    /// The requests counted in `self` since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            lists: self.lists - earlier.lists,
            listed_objects: self.listed_objects - earlier.listed_objects,
            list_pages: self.list_pages - earlier.list_pages,
            gets: self.gets - earlier.gets,
            puts: self.puts - earlier.puts,
            deletes: self.deletes - earlier.deletes,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    lists: AtomicU64,
    listed_objects: AtomicU64,
    list_pages: AtomicU64,
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
}

/// Passes every call to the inner store and counts it.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore {
            inner,
            counters: Arc::default(),
        }
    }

    /// What was counted so far.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counts {
            lists: load(&c.lists),
            listed_objects: load(&c.listed_objects),
            list_pages: load(&c.list_pages),
            gets: load(&c.gets),
            puts: load(&c.puts),
            deletes: load(&c.deletes),
        }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        bump(&self.counters.puts);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        bump(&self.counters.puts);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        bump(&self.counters.gets);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.counters
            .gets
            .fetch_add(ranges.len() as u64, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counters = self.counters.clone();
        let counted = locations.inspect(move |_| bump(&counters.deletes)).boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        bump(&self.counters.lists);
        bump(&self.counters.list_pages);
        let counters = self.counters.clone();
        let mut in_this_list = 0u64;
        self.inner
            .list(prefix)
            .inspect(move |item| {
                if item.is_ok() {
                    bump(&counters.listed_objects);
                    in_this_list += 1;
                    // The first page is counted with the call; every further 1000 keys add one.
                    if in_this_list > 1 && (in_this_list - 1).is_multiple_of(S3_LIST_PAGE) {
                        bump(&counters.list_pages);
                    }
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        bump(&self.counters.lists);
        bump(&self.counters.list_pages);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        bump(&self.counters.puts);
        self.inner.copy_opts(from, to, options).await
    }
}
