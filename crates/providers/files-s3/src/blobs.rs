//! The uploaded bytes: one object per file id in the bucket, through `object_store`. The bucket
//! is checked (and, when asked, created) at start-up with signed `HEAD` and `PUT` bucket
//! requests, which `object_store` does not offer.

use std::time::Duration;

use llama_stack_core::{Error, ErrorKind, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::client::HttpRequestBody;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use reqwest::StatusCode;

use crate::config::S3FilesConfig;

/// Connecting must fail fast: a wrong endpoint stops the start with a clear message.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, a large upload or download included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) struct S3Blobs {
    store: AmazonS3,
    bucket: String,
    region: String,
    /// `<endpoint>/<bucket>`, for the bucket requests and for messages.
    bucket_url: String,
    http: reqwest::Client,
}

impl S3Blobs {
    /// Opens the bucket: checks that it exists and that the credentials may use it, creating it
    /// first when `auto_create_bucket` says so.
    pub(crate) async fn open(config: &S3FilesConfig) -> Result<S3Blobs> {
        // reqwest runs on rustls without a default crypto provider (see the root Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let region = config.region().to_string();
        let endpoint = config
            .endpoint()
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let bucket_url = format!("{endpoint}/{}", config.bucket_name);
        let options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_allow_http(endpoint.starts_with("http://"));
        // The usual AWS sources first (AWS_* variables, web identity, the instance's role); the
        // config's values win.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket_name)
            .with_region(&region)
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if let (Some(key), Some(secret)) =
            (&config.aws_access_key_id, &config.aws_secret_access_key)
        {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| {
            Error::invalid(format!("cannot set up the S3 client for {bucket_url}: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("cannot build an HTTP client: {e}")))?;
        let blobs = S3Blobs {
            store,
            bucket: config.bucket_name.clone(),
            region,
            bucket_url,
            http,
        };
        blobs.check_bucket(config.auto_create_bucket).await?;
        Ok(blobs)
    }

    pub(crate) fn bucket_url(&self) -> &str {
        &self.bucket_url
    }

    /// A signed request on the bucket itself; its status, and its body for messages.
    async fn bucket_request(
        &self,
        method: http::Method,
        body: Vec<u8>,
    ) -> Result<(StatusCode, String)> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| self.error("getting S3 credentials", e))?;
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&self.bucket_url)
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| self.error("building a bucket request", e))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| self.error("signing a bucket request", e))?;
        let response = self
            .http
            .request(method, &self.bucket_url)
            .headers(request.headers().clone())
            .body(body)
            .send()
            .await
            .map_err(|e| self.error("reaching the S3 server", e))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }

    async fn check_bucket(&self, auto_create: bool) -> Result<()> {
        let (status, _) = self.bucket_request(http::Method::HEAD, Vec::new()).await?;
        match status {
            s if s.is_success() => return Ok(()),
            StatusCode::NOT_FOUND if auto_create => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::invalid(format!(
                    "the S3 bucket {} does not exist; create it, or set auto_create_bucket: \
                     true (S3_AUTO_CREATE_BUCKET=true in the shipped distributions)",
                    self.bucket_url
                )));
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(Error::invalid(format!(
                    "the S3 server refused access to bucket {} ({status}); check \
                     aws_access_key_id and aws_secret_access_key",
                    self.bucket_url
                )));
            }
            StatusCode::MOVED_PERMANENTLY => {
                return Err(Error::invalid(format!(
                    "the S3 bucket {} is not in region {}; set region to the bucket's region",
                    self.bucket_url, self.region
                )));
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Upstream,
                    format!(
                        "the S3 server answered {other} for bucket {}",
                        self.bucket_url
                    ),
                ));
            }
        }
        // Outside us-east-1 S3 wants the region named in the request.
        let body = if self.region == crate::config::DEFAULT_REGION {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into_bytes()
        };
        let (status, text) = self.bucket_request(http::Method::PUT, body).await?;
        // Another replica starting at the same time may have created it first.
        if status.is_success() {
            tracing::info!(bucket = %self.bucket_url, "Created the S3 bucket for files");
            return Ok(());
        }
        if text.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Upstream,
            format!(
                "cannot create the S3 bucket {} ({status}): {}",
                self.bucket_url,
                text.trim()
            ),
        ))
    }

    fn error(&self, action: &str, err: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Upstream,
            format!(
                "files (S3 bucket {}): {action} failed: {err}",
                self.bucket_url
            ),
        )
        .set_temporary(true)
    }

    pub(crate) async fn write(&self, id: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&Path::from(id), PutPayload::from(bytes))
            .await
            .map_err(|e| self.error("storing an upload", e))?;
        Ok(())
    }

    /// The bytes, or `None` when there is no object under the id.
    pub(crate) async fn read(&self, id: &str) -> Result<Option<Vec<u8>>> {
        match self.store.get(&Path::from(id)).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .map_err(|e| self.error("reading a file", e))?;
                Ok(Some(bytes.into()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("reading a file", e)),
        }
    }

    /// Removes the object; a missing one is not an error.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        match self.store.delete(&Path::from(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("removing a file", e)),
        }
    }
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs")
            .field("bucket", &self.bucket)
            .field("bucket_url", &self.bucket_url)
            .finish()
    }
}
