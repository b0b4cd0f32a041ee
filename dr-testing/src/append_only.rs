//! An `ObjectStore` wrapper with the rights of an append-only backup host: create, read,
//! list, copy; every delete is refused with `PermissionDenied`, as S3 answers a role without
//! `s3:DeleteObject`. Refused deletes are counted so a test can tell attempts from none.

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

/// Refuses deletes; passes everything else to the inner store.
#[derive(Debug)]
pub struct AppendOnlyStore {
    inner: Arc<dyn ObjectStore>,
    refused: Arc<AtomicU64>,
}

impl AppendOnlyStore {
    /// `inner` with deletes refused.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        AppendOnlyStore {
            inner,
            refused: Arc::default(),
        }
    }

    /// Deletes refused so far.
    pub fn refused_deletes(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl fmt::Display for AppendOnlyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppendOnly({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for AppendOnlyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let refused = self.refused.clone();
        locations
            .map(move |location| {
                let location = location?;
                refused.fetch_add(1, Ordering::SeqCst);
                Err(object_store::Error::PermissionDenied {
                    path: location.to_string(),
                    source: "append-only credentials: s3:DeleteObject is not granted".into(),
                })
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
