//! S3 Object Lock and versions ([`ObjectLocks`]) through signed requests: `object_store`
//! signs them ([`AwsAuthorizer`], with the store's own credential provider) and sends them
//! with its own HTTP client, so the same endpoint, credentials, TLS roots and proxy apply.
//! Five calls: GetObjectLockConfiguration, PutObjectRetention, HEAD (the lock headers),
//! GetBucketVersioning and ListObjectVersions.

use base64::Engine;
use chrono::{DateTime, Utc};
use dr_core::locks::{BucketLock, LockMode, ObjectLocks, ObjectVersion, Retention};
use dr_core::object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey as Key};
use dr_core::object_store::aws::{AwsAuthorizer, AwsCredential};
use dr_core::object_store::client::{HttpClient, HttpConnector, ReqwestConnector};
use dr_core::object_store::path::Path;
use dr_core::object_store::{ClientOptions, CredentialProvider};
use dr_core::{Error, Result};
use md5::Digest as _;

use crate::xml::{Element, parse};

/// The lock control plane of one S3 bucket and prefix.
#[derive(Debug)]
pub struct S3Locks {
    client: HttpClient,
    credentials: std::sync::Arc<dyn CredentialProvider<Credential = AwsCredential>>,
    bucket_url: url::Url,
    region: String,
    prefix: String,
}

impl S3Locks {
    /// The control plane beside `store` for `url` (`s3://BUCKET/PREFIX`), built from the same
    /// `builder` and client options.
    ///
    /// # Errors
    /// The bucket endpoint does not parse, or the HTTP client cannot be built.
    pub fn new(
        builder: &AmazonS3Builder,
        store: &AmazonS3,
        client: &ClientOptions,
        url: &url::Url,
    ) -> std::result::Result<S3Locks, dr_core::object_store::Error> {
        let value = |key: Key| builder.get_config_value(&key);
        let region = value(Key::Region).unwrap_or_else(|| "us-east-1".into());
        // `with_url` is parsed only by `build`: the bucket comes from the URL itself.
        let bucket = url.host_str().unwrap_or_default().to_owned();
        let prefix = url.path();
        let virtual_hosted = value(Key::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let endpoint = value(Key::Endpoint);
        let url = match (endpoint, virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let bucket_url =
            url::Url::parse(&url).map_err(|e| dr_core::object_store::Error::Generic {
                store: "S3",
                source: format!("bucket endpoint {url}: {e}").into(),
            })?;
        Ok(S3Locks {
            client: ReqwestConnector::default().connect(client)?,
            credentials: store.credentials().clone(),
            bucket_url,
            region,
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// The URL of `key` (relative to the prefix; `None`: the bucket) with `query`.
    fn url(&self, key: Option<&Path>, query: &[(&str, &str)]) -> url::Url {
        let mut url = self.bucket_url.clone();
        if let Some(key) = key
            && let Ok(mut segments) = url.path_segments_mut()
        {
            segments.pop_if_empty();
            segments.extend(self.prefix.split('/').filter(|s| !s.is_empty()));
            segments.extend(key.parts().map(|p| p.as_ref().to_owned()));
        }
        let mut text = url.to_string();
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| match v {
                v if v.is_empty()
                    && matches!(*k, "object-lock" | "retention" | "versions" | "versioning") =>
                {
                    (*k).to_owned()
                }
                v => format!("{k}={}", encode(v)),
            })
            .collect();
        if !pairs.is_empty() {
            text = format!("{text}?{}", pairs.join("&"));
        }
        url::Url::parse(&text).unwrap_or(url)
    }

    async fn send(
        &self,
        method: http::Method,
        url: url::Url,
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>)> {
        let what = format!("{method} {}", url.path());
        let fail = |detail: String| Error::backend("s3", what.clone(), detail).retryable();
        let mut builder = http::Request::builder().method(method).uri(url.as_str());
        if !body.is_empty() {
            let md5 = md5::Md5::digest(&body);
            builder = builder.header(
                "content-md5",
                base64::engine::general_purpose::STANDARD.encode(md5),
            );
        }
        let mut request = builder.body(body.into()).map_err(|e| fail(e.to_string()))?;
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| fail(e.to_string()))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| fail(e.to_string()))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok((status, headers, bytes.to_vec()))
    }

    /// Sends, and turns a non-2xx answer into an error naming S3's code, except `absent`
    /// codes, which come back as `None`.
    async fn call(
        &self,
        method: http::Method,
        url: url::Url,
        body: Vec<u8>,
        absent: &[&str],
    ) -> Result<Option<Element>> {
        let what = format!("{method} {}", url.path());
        let (status, _, bytes) = self.send(method, url, body).await?;
        let parsed = if bytes.is_empty() {
            Element::default()
        } else {
            parse(&bytes).map_err(|e| Error::backend("s3", what.clone(), e))?
        };
        if status.is_success() {
            return Ok(Some(parsed));
        }
        let code = parsed.text("Code").unwrap_or_default();
        if absent.contains(&code) {
            return Ok(None);
        }
        let message = parsed.text("Message").unwrap_or_default();
        let error = Error::backend("s3", what, format!("{status} {code}: {message}"));
        Err(error.retryable_if(status.is_server_error()))
    }
}

#[async_trait::async_trait]
impl ObjectLocks for S3Locks {
    async fn bucket_lock(&self) -> Result<Option<BucketLock>> {
        let url = self.url(None, &[("object-lock", "")]);
        let absent = [
            "ObjectLockConfigurationNotFoundError",
            "NoSuchObjectLockConfiguration",
        ];
        let Some(config) = self
            .call(http::Method::GET, url, Vec::new(), &absent)
            .await?
        else {
            return Ok(None);
        };
        if config.text("ObjectLockEnabled") != Some("Enabled") {
            return Ok(None);
        }
        let default = config.find("DefaultRetention");
        let days = |tag: &str, per: u64| {
            default
                .and_then(|d| d.text(tag))
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| std::time::Duration::from_secs(n * per))
        };
        Ok(Some(BucketLock {
            default_mode: default
                .and_then(|d| d.text("Mode"))
                .and_then(LockMode::parse),
            default_retention: days("Days", 86_400).or_else(|| days("Years", 365 * 86_400)),
        }))
    }

    async fn set_retention(&self, key: &Path, retention: Retention) -> Result<()> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.as_s3(),
            retention.until.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        let url = self.url(Some(key), &[("retention", "")]);
        self.call(http::Method::PUT, url, body.into_bytes(), &[])
            .await
            .map(|_| ())
    }

    async fn versioning(&self) -> Result<bool> {
        let url = self.url(None, &[("versioning", "")]);
        let answer = self.call(http::Method::GET, url, Vec::new(), &[]).await?;
        let status = answer.as_ref().and_then(|a| a.text("Status"));
        Ok(matches!(status, Some("Enabled" | "Suspended")))
    }

    async fn retention(&self, key: &Path) -> Result<Option<Retention>> {
        self.head_retention(key, None).await
    }

    async fn version_retention(&self, key: &Path, version: &str) -> Result<Option<Retention>> {
        self.head_retention(key, Some(version)).await
    }

    async fn versions(&self, prefix: Option<&Path>) -> Result<Vec<ObjectVersion>> {
        let mut full = self.prefix.clone();
        if let Some(prefix) = prefix {
            if !full.is_empty() {
                full.push('/');
            }
            full.push_str(prefix.as_ref());
        }
        let (mut key_marker, mut version_marker) = (String::new(), String::new());
        let mut out = Vec::new();
        loop {
            let mut query = vec![("versions", ""), ("prefix", full.as_str())];
            if !key_marker.is_empty() {
                query.push(("key-marker", &key_marker));
                query.push(("version-id-marker", &version_marker));
            }
            let url = self.url(None, &query);
            let page = self
                .call(http::Method::GET, url, Vec::new(), &[])
                .await?
                .unwrap_or_default();
            for entry in &page.children {
                if let Some(version) = self.version_of(entry) {
                    out.push(version);
                }
            }
            if page.text("IsTruncated") != Some("true") {
                return Ok(out);
            }
            key_marker = page.text("NextKeyMarker").unwrap_or_default().to_owned();
            version_marker = page
                .text("NextVersionIdMarker")
                .unwrap_or_default()
                .to_owned();
            if key_marker.is_empty() {
                return Ok(out);
            }
        }
    }
}

impl S3Locks {
    /// From HEAD's lock headers (GetObjectRetention answers 500 on moto for an object
    /// without one; HEAD shows the headers to whoever has `s3:GetObjectRetention`).
    async fn head_retention(&self, key: &Path, version: Option<&str>) -> Result<Option<Retention>> {
        let query: Vec<(&str, &str)> = version.map(|v| ("versionId", v)).into_iter().collect();
        let url = self.url(Some(key), &query);
        let what = format!("HEAD {}", url.path());
        let (status, headers, _) = self.send(http::Method::HEAD, url, Vec::new()).await?;
        if !status.is_success() {
            let error = Error::backend("s3", what, format!("{status}"));
            return Err(error.retryable_if(status.is_server_error()));
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let mode = header("x-amz-object-lock-mode").and_then(LockMode::parse);
        let until = header("x-amz-object-lock-retain-until-date").and_then(parse_time);
        Ok(mode
            .zip(until)
            .map(|(mode, until)| Retention { mode, until }))
    }

    /// A `<Version>` or `<DeleteMarker>` of a listing, with its key made relative.
    fn version_of(&self, entry: &Element) -> Option<ObjectVersion> {
        let deleted = match entry.name.as_str() {
            "Version" => false,
            "DeleteMarker" => true,
            _ => return None,
        };
        let key = entry.text("Key")?;
        let relative = match self.prefix.as_str() {
            "" => key,
            prefix => key.strip_prefix(prefix)?.strip_prefix('/')?,
        };
        Some(ObjectVersion {
            key: Path::from(relative),
            version: entry.text("VersionId")?.to_owned(),
            modified: parse_time(entry.text("LastModified")?)?,
            deleted,
            size: entry.text("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
            latest: entry.text("IsLatest") == Some("true"),
        })
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Percent-encodes a query value as SigV4 wants it (unreserved characters kept).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
