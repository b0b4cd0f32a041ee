//! Small helpers over `object_store` that turn its errors into dr's, and retry what may be
//! transient: every call is tried up to [`ATTEMPTS`] times with exponential backoff and
//! jitter when the store fails with anything but a definite answer (not found, already
//! exists, precondition, not supported, invalid path). HTTP stores retry inside
//! `object_store` too; this layer also covers the local filesystem and failures between
//! requests (a body cut off midway).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Error, Result};

/// How many times a store call is tried before its error is returned.
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Stores whose client already retries transient failures with backoff (object_store's
/// `RetryConfig`): retrying their errors again would only multiply the wait.
const RETRYING_CLIENTS: [&str; 4] = ["S3", "GCS", "MicrosoftAzure", "HTTP"];

/// Whether an `object_store` error is a definite answer (not found, exists, precondition,
/// not supported, invalid path, permission): asking again gives the same one.
pub(crate) fn is_definite(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    )
}

/// Whether an `object_store` error may go away when the call is repeated here (not by the
/// clients that already retried it themselves).
pub fn is_transient(e: &object_store::Error) -> bool {
    let retried_by_client = matches!(
        e,
        object_store::Error::Generic { store, .. } if RETRYING_CLIENTS.contains(store)
    );
    !retried_by_client && !is_definite(e)
}

/// Runs `call` (attempt numbers from 1) until it succeeds, fails for good, or has been tried
/// [`ATTEMPTS`] times; sleeps 50 ms, 100 ms, 200 ms... (at most 2 s, +-50 % jitter) between.
///
/// # Errors
/// The last error.
pub async fn with_retries<T, F, Fut>(what: &str, mut call: F) -> object_store::Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call(attempt).await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(backoff.mul_f64(0.5 + rand::random::<f64>())).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Reads a whole object; a missing object is [`Error::MissingObject`].
///
/// # Errors
/// [`Error::MissingObject`] or [`Error::Store`].
pub async fn get_object(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    with_retries(&format!("reading {path}"), |_| async {
        store.get(path).await?.bytes().await
    })
    .await
    .map_err(|e| not_found_or(e, path, "reading"))
}

/// Writes an object that must not exist yet (every dr object is immutable). When a retry
/// finds the key taken, the object is read back: if it holds exactly these bytes, the
/// earlier attempt did succeed (its answer was lost) and so does this call.
///
/// # Errors
/// [`Error::Store`] (`AlreadyExists` when the key is taken by other bytes).
pub async fn create_object(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: impl Into<Bytes>,
) -> Result<()> {
    let bytes: Bytes = bytes.into();
    let outcome = with_retries(&format!("writing {path}"), |attempt| {
        let bytes = bytes.clone();
        async move {
            let payload = PutPayload::from(bytes.clone());
            match store.put_opts(path, payload, PutMode::Create.into()).await {
                Err(object_store::Error::AlreadyExists { .. }) if attempt > 1 => {
                    let there = store.get(path).await?.bytes().await?;
                    if there == bytes {
                        return Ok(());
                    }
                    Err(object_store::Error::AlreadyExists {
                        path: path.to_string(),
                        source: "another object was written under this key".into(),
                    })
                }
                other => other.map(|_| ()),
            }
        }
    })
    .await;
    outcome.map_err(|e| Error::store(format!("writing {path}"), e))
}

/// Deletes an object; one that is already gone is not an error (stores differ on this).
///
/// # Errors
/// [`Error::Store`].
pub async fn delete_object(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match with_retries(&format!("deleting {path}"), |_| store.delete(path)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(format!("deleting {path}"), e)),
    }
}

/// Whether the store refused an operation for lack of rights: `PermissionDenied`, or S3's
/// `AccessDenied` inside a bulk delete's answer (which object_store reports as generic).
pub fn is_permission_denied(error: &Error) -> bool {
    match error {
        Error::Store {
            source: object_store::Error::PermissionDenied { .. },
            ..
        } => true,
        Error::Store { source, .. } => source.to_string().contains("AccessDenied"),
        _ => false,
    }
}

/// Lists every object under `prefix`.
///
/// # Errors
/// [`Error::Store`].
pub async fn list_objects(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<ObjectMeta>> {
    with_retries(&format!("listing {prefix}"), |_| {
        store.list(Some(prefix)).try_collect()
    })
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
