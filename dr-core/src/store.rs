//! Small helpers over `object_store` that turn its errors into dr's.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Error, Result};

/// Reads a whole object; a missing object is [`Error::MissingObject`].
///
/// # Errors
/// [`Error::MissingObject`] or [`Error::Store`].
pub async fn get_object(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    let result = store
        .get(path)
        .await
        .map_err(|e| not_found_or(e, path, "reading"))?;
    result
        .bytes()
        .await
        .map_err(|e| not_found_or(e, path, "reading"))
}

/// Writes an object that must not exist yet (every dr object is immutable).
///
/// # Errors
/// [`Error::Store`] (`AlreadyExists` when the key is taken).
pub async fn create_object(store: &dyn ObjectStore, path: &Path, bytes: Vec<u8>) -> Result<()> {
    store
        .put_opts(path, PutPayload::from(bytes), PutMode::Create.into())
        .await
        .map(|_| ())
        .map_err(|e| Error::store(format!("writing {path}"), e))
}

/// Deletes an object; one that is already gone is not an error (stores differ on this).
///
/// # Errors
/// [`Error::Store`].
pub async fn delete_object(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(format!("deleting {path}"), e)),
    }
}

/// Lists every object under `prefix`.
///
/// # Errors
/// [`Error::Store`].
pub async fn list_objects(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<ObjectMeta>> {
    store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| Error::store(format!("listing {prefix}"), e))
}

fn not_found_or(e: object_store::Error, path: &Path, operation: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::MissingObject {
            key: path.to_string(),
        },
        other => Error::store(format!("{operation} {path}"), other),
    }
}
