//! Opening an object store from a repository URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::locks::ObjectLocks;
use dr_core::object_store::ObjectStore;
use dr_core::object_store::local::LocalFileSystem;
use dr_core::object_store::memory::InMemory;
use dr_core::object_store::prefix::PrefixStore;
use dr_core::{Error, Recipients, Repository, Result};

use dr_core::redact_url;

use crate::tls::{explain_untrusted_certificate, roots, split_ca_file};

/// An object store opened from a URL, with the URL as it may be shown (no credentials).
#[derive(Clone)]
pub struct StoreLocation {
    store: Arc<dyn ObjectStore>,
    shown: String,
    locks: Option<Arc<dyn ObjectLocks>>,
}

impl StoreLocation {
    /// Wraps a store built elsewhere; `shown` must already be free of credentials.
    pub fn new(store: Arc<dyn ObjectStore>, shown: impl Into<String>) -> Self {
        StoreLocation {
            store,
            shown: shown.into(),
            locks: None,
        }
    }

    /// The store's Object Lock and versions control plane (S3 only).
    pub fn locks(&self) -> Option<Arc<dyn ObjectLocks>> {
        self.locks.clone()
    }

    /// Opens `location`'s repository, with its lock control plane attached.
    async fn open_repository(&self) -> Result<Repository> {
        let repo = Repository::open(self.store(), self.url())
            .await
            .map_err(|e| explain_untrusted_certificate(e, self.url()))?;
        Ok(match &self.locks {
            Some(locks) => repo.with_object_locks(locks.clone()),
            None => repo,
        })
    }

    /// The store, already limited to the URL's prefix.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The URL with credentials redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreLocation({})", self.shown)
    }
}

/// Opens the store for `url` (a plain path, `file://`, `memory://`, `s3://`, `gs://`,
/// `az://`). `options` are the object_store configuration keys of that scheme (e.g.
/// `aws_endpoint`, `aws_allow_http`) and override the environment; and dr's own
/// [`CA_FILE_OPTION`] (`ca_file`): a PEM file of CA certificates trusted besides the system's
/// roots, for a store behind a private CA. With `create`, a missing local directory is
/// created.
///
/// # Errors
/// [`Error::InvalidLocation`] for a malformed URL, an unknown scheme, a scheme whose
/// feature is not compiled in, or an unreadable `ca_file` (or one given for a local or
/// in-memory store); [`Error::NotInitialised`] for a missing local directory.
pub fn open_store(url: &str, options: &[(&str, &str)], create: bool) -> Result<StoreLocation> {
    let shown = redact_url(url);
    let invalid = |detail: String| Error::InvalidLocation {
        location: shown.clone(),
        detail,
    };
    let (ca_file, options) = split_ca_file(options);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if ca_file.is_some() && matches!(scheme, None | Some("file" | "memory")) {
        return Err(invalid(
            "ca_file applies to s3://, gs:// and az:// stores only (this one has no TLS)".into(),
        ));
    }
    let Some(scheme) = scheme else {
        return open_local(Path::new(url), create);
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a valid URL ({e})")))?;
    let roots = roots::load(ca_file).map_err(invalid)?;
    let options = &options[..];
    match scheme {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| invalid("a file:// URL needs an absolute path".into()))?;
            return open_local(&path, create);
        }
        "memory" => return Ok(StoreLocation::new(Arc::new(InMemory::new()), "memory://")),
        "s3" | "s3a" => cloud::s3(&parsed, options, roots),
        "gs" => cloud::gcs(&parsed, options, roots),
        "az" | "azure" | "abfs" | "abfss" => cloud::azure(&parsed, options, roots),
        other => {
            return Err(invalid(format!(
                "unknown scheme {other}://; use a path, file://, memory://, s3://, gs:// or az://"
            )));
        }
    }
    .map(|(store, locks)| StoreLocation {
        locks,
        ..StoreLocation::new(with_prefix(store, &parsed), shown.clone())
    })
    .map_err(|e| invalid(e.to_string()))
}

fn open_local(path: &Path, create: bool) -> Result<StoreLocation> {
    let absolute: PathBuf = std::path::absolute(path)
        .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
    let shown = format!("file://{}", absolute.display());
    if create {
        std::fs::create_dir_all(&absolute)
            .map_err(|e| Error::io(format!("creating {}", absolute.display()), e))?;
    } else if !absolute.is_dir() {
        return Err(Error::NotInitialised { location: shown });
    }
    let store =
        LocalFileSystem::new_with_prefix(&absolute).map_err(|e| Error::InvalidLocation {
            location: shown.clone(),
            detail: e.to_string(),
        })?;
    let tidy = crate::tidy_local::TidyLocalStore::new(Arc::new(store), absolute);
    Ok(StoreLocation::new(Arc::new(tidy), shown))
}

fn with_prefix(store: Arc<dyn ObjectStore>, url: &url::Url) -> Arc<dyn ObjectStore> {
    let prefix = url.path().trim_matches('/');
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

mod cloud {
    use std::sync::Arc;

    use dr_core::locks::ObjectLocks;
    use dr_core::object_store::{self, ObjectStore};

    use crate::tls::roots::Roots;
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    use crate::tls::roots::client_options;

    /// A store, and its lock control plane where it has one.
    type Built = std::result::Result<
        (Arc<dyn ObjectStore>, Option<Arc<dyn ObjectLocks>>),
        object_store::Error,
    >;

    #[cfg(feature = "aws")]
    pub fn s3(url: &url::Url, options: &[(&str, &str)], roots: Roots) -> Built {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as Key};
        // Atomic create-if-absent, which manifests rely on.
        let mut builder = AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .with_config(Key::ConditionalPut, "etag");
        let mut client = client_options(roots, "AWS_", |k| match k.parse() {
            Ok(Key::Client(key)) => Some(key),
            _ => None,
        });
        let mut checksum_chosen = std::env::var_os("AWS_CHECKSUM_ALGORITHM").is_some();
        for (key, value) in options {
            let key: Key = key.parse()?;
            match key {
                Key::Client(client_key) => client = client.with_config(client_key, *value),
                Key::Checksum => checksum_chosen = true,
                _ => {}
            }
            builder = builder.with_config(key, *value);
        }
        if !checksum_chosen {
            // A bucket with a default Object Lock retention refuses uploads without an
            // integrity header (Content-MD5, or the SDK's checksum headers): send SHA-256
            // checksums as the AWS SDKs do, which also checks every upload in transit.
            builder = builder.with_config(Key::Checksum, "sha256");
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-sdk-checksum-algorithm",
                http::HeaderValue::from_static("SHA256"),
            );
            client = client.with_default_headers(headers);
        }
        let builder = builder.with_client_options(client.clone());
        let store = builder.clone().build()?;
        let locks = crate::s3_locks::S3Locks::new(&builder, &store, &client, url)?;
        Ok((Arc::new(store), Some(Arc::new(locks))))
    }

    #[cfg(feature = "gcp")]
    pub fn gcs(url: &url::Url, options: &[(&str, &str)], roots: Roots) -> Built {
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as Key};
        let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
        if !roots.is_empty() {
            builder = builder.with_client_options(client_options(roots, "GOOGLE_", |k| {
                match k.parse() {
                    Ok(Key::Client(key)) => Some(key),
                    _ => None,
                }
            }));
        }
        for (key, value) in options {
            builder = builder.with_config(key.parse()?, *value);
        }
        Ok((Arc::new(builder.build()?), None))
    }

    #[cfg(feature = "azure")]
    pub fn azure(url: &url::Url, options: &[(&str, &str)], roots: Roots) -> Built {
        use object_store::azure::{AzureConfigKey as Key, MicrosoftAzureBuilder};
        let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
        if !roots.is_empty() {
            builder =
                builder.with_client_options(client_options(roots, "AZURE_", |k| match k.parse() {
                    Ok(Key::Client(key)) => Some(key),
                    _ => None,
                }));
        }
        for (key, value) in options {
            builder = builder.with_config(key.parse()?, *value);
        }
        Ok((Arc::new(builder.build()?), None))
    }

    #[cfg(not(feature = "aws"))]
    pub fn s3(_: &url::Url, _: &[(&str, &str)], _: Roots) -> Built {
        Err(missing_feature("aws"))
    }

    #[cfg(not(feature = "gcp"))]
    pub fn gcs(_: &url::Url, _: &[(&str, &str)], _: Roots) -> Built {
        Err(missing_feature("gcp"))
    }

    #[cfg(not(feature = "azure"))]
    pub fn azure(_: &url::Url, _: &[(&str, &str)], _: Roots) -> Built {
        Err(missing_feature("azure"))
    }

    #[allow(dead_code)]
    fn missing_feature(feature: &str) -> object_store::Error {
        object_store::Error::NotSupported {
            source: format!("this dr was built without the `{feature}` feature; rebuild with --features {feature}").into(),
        }
    }
}

/// Opens an existing repository at `url`.
///
/// # Errors
/// As [`open_store`] and [`Repository::open`]; a TLS certificate the client does not trust
/// is an [`Error::Backend`] that names `ca_file`.
pub async fn open_repository(url: &str, options: &[(&str, &str)]) -> Result<Repository> {
    open_store(url, options, false)?.open_repository().await
}

/// Creates a repository at `url` (a local directory is created if missing).
///
/// # Errors
/// As [`open_store`] and [`Repository::init`]; a TLS certificate the client does not trust
/// is an [`Error::Backend`] that names `ca_file`.
pub async fn init_repository(
    url: &str,
    options: &[(&str, &str)],
    recipients: &Recipients,
) -> Result<Repository> {
    let location = open_store(url, options, true)?;
    let repo = Repository::init(location.store(), location.url(), recipients)
        .await
        .map_err(|e| explain_untrusted_certificate(e, location.url()))?;
    Ok(match location.locks() {
        Some(locks) => repo.with_object_locks(locks),
        None => repo,
    })
}
