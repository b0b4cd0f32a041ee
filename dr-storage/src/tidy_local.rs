//! A local directory store that leaves no empty directories behind: `LocalFileSystem`
//! creates a directory per key prefix and never removes one, so failed backups, pruned
//! backups and expired leases would leave `backups/<source>/<id>/` husks forever.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use dr_core::async_trait;
use dr_core::object_store::path::Path;
use dr_core::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures::StreamExt;
use futures::stream::BoxStream;

/// Wraps a `LocalFileSystem` rooted at `root`: after each delete, the emptied parent
/// directories of the key are removed, up to (not including) the root.
#[derive(Debug)]
pub struct TidyLocalStore {
    inner: Arc<dyn ObjectStore>,
    root: Arc<PathBuf>,
}

impl TidyLocalStore {
    /// `inner` is a `LocalFileSystem` with prefix `root`.
    pub fn new(inner: Arc<dyn ObjectStore>, root: PathBuf) -> Self {
        TidyLocalStore {
            inner,
            root: Arc::new(root),
        }
    }
}

/// Removes the now-empty directories above `key` (a failing `remove_dir` means "not empty"
/// or "already gone": both end the walk).
fn remove_empty_parents(root: &std::path::Path, key: &Path) {
    let mut parts: Vec<&str> = key.as_ref().split('/').collect();
    parts.pop();
    while !parts.is_empty() {
        let dir = root.join(parts.join("/"));
        if std::fs::remove_dir(&dir).is_err() {
            return;
        }
        parts.pop();
    }
}

impl fmt::Display for TidyLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for TidyLocalStore {
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
        let root = self.root.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |deleted| {
                if let Ok(key) = deleted {
                    remove_empty_parents(&root, key);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use dr_core::object_store::ObjectStoreExt;
    use dr_core::object_store::local::LocalFileSystem;

    #[tokio::test]
    async fn deleting_the_last_object_removes_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let store = TidyLocalStore::new(Arc::new(local), dir.path().to_path_buf());
        for key in ["backups/a/1/x", "backups/a/1/y", "backups/b/2/z"] {
            store.put(&Path::from(key), "data".into()).await.unwrap();
        }
        store.delete(&Path::from("backups/a/1/x")).await.unwrap();
        assert!(dir.path().join("backups/a/1").is_dir(), "y is still there");
        store.delete(&Path::from("backups/a/1/y")).await.unwrap();
        assert!(!dir.path().join("backups/a").exists());
        assert!(dir.path().join("backups/b/2/z").is_file());
        assert!(dir.path().is_dir(), "the root stays");
    }
}
