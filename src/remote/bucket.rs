//! Remote caches on object storage through the `object_store` crate: `file:///DIR` (a
//! shared directory) and `s3://BUCKET/PREFIX` (any S3-compatible server; endpoint and
//! credentials from the `AWS_*` environment, never from the project). Its tokio runtime
//! lives here and nowhere else.
//!
//! Layout under the root: `realisations/<drv>.json` (signed records, written create-only),
//! `objects/<blake3>.zst` (store objects as they are), `blobs/sha256/<hex>` (layer blobs).
//! Files before records, so a reader never finds a record without its files.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

use super::{Error, Pushed, Substituter};
use crate::drv::DrvHash;
use crate::fs::{FsError, err};
use crate::store::Realisation;

/// Chunk size of uploads and of reads from disk.
const CHUNK: usize = 8 << 20;

/// A cache on object storage.
pub struct Bucket {
    url: String,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// Checks the form of `url` without opening anything.
    pub fn check(url: &str) -> Result<(), Error> {
        let bad = |why: &str| Error::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(bad("a file:// cache needs an absolute path (file:///DIR)"));
            }
        } else if let Some(rest) = url.strip_prefix("s3://") {
            if rest.split('/').next().unwrap_or("").is_empty() {
                return Err(bad("an s3:// cache needs a bucket (s3://BUCKET/PREFIX)"));
            }
        } else {
            return Err(bad("expected file:///DIR or s3://BUCKET/PREFIX"));
        }
        Ok(())
    }

    /// Opens `url` (`file:///DIR` or `s3://BUCKET[/PREFIX]`).
    pub fn open(url: &str) -> Result<Self, Error> {
        Self::check(url)?;
        let store: Arc<dyn ObjectStore> = if let Some(dir) = url.strip_prefix("file://") {
            err::create_dir_all(dir).map_err(|e| FsError::new("create cache directory", dir, e))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| Error::remote(url, e))?;
            Arc::new(local.with_automatic_cleanup(true))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // Endpoint, region, credentials and client options (AWS_ALLOW_HTTP, proxies,
            // AWS_TIMEOUT, AWS_CONNECT_TIMEOUT) from the environment; where it sets no
            // timeouts: 3 s to connect, 30 minutes for a whole request (a large object on a
            // slow link), and at most two retries within 10 s.
            let client = |key| object_store::aws::AmazonS3ConfigKey::Client(key);
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (variable, key, value) in [
                ("AWS_CONNECT_TIMEOUT", ClientConfigKey::ConnectTimeout, "3s"),
                ("AWS_TIMEOUT", ClientConfigKey::Timeout, "30m"),
            ] {
                if std::env::var_os(variable).is_none() {
                    builder = builder.with_config(client(key), value);
                }
            }
            let s3 = builder
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(10),
                })
                .build()
                .map_err(|e| Error::remote(url, e))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            }
        } else {
            unreachable!("checked above")
        };
        let runtime = super::runtime(url)?;
        Ok(Self {
            url: url.to_owned(),
            store,
            runtime,
        })
    }

    /// A cache on `store` (tests: stores that misbehave).
    #[cfg(test)]
    pub(crate) fn with_store(url: &str, store: Arc<dyn ObjectStore>) -> Self {
        let runtime = super::runtime(url).expect("a runtime");
        Self {
            url: url.to_owned(),
            store,
            runtime,
        }
    }

    fn record_key(drv: &DrvHash) -> Key {
        Key::from(format!("realisations/{drv}.json"))
    }

    fn object_key(record: &Realisation) -> Key {
        Key::from(format!("objects/{}.zst", record.object))
    }

    fn layer_key(record: &Realisation) -> Key {
        Key::from(format!("blobs/sha256/{}", record.layer.digest))
    }

    /// The bytes at `key`, or `None` when there is nothing.
    fn get_small(&self, key: &Key) -> Result<Option<Vec<u8>>, Error> {
        self.runtime
            .block_on(async {
                match self.store.get(key).await {
                    Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .map_err(|e| Error::remote(&self.url, e))
    }

    /// Streams the file at `key` into `out`.
    fn download(&self, key: &Key, out: &mut dyn Write) -> Result<(), Error> {
        self.runtime
            .block_on(async {
                let mut stream = self.store.get(key).await?.into_stream();
                while let Some(chunk) = stream.next().await {
                    out.write_all(&chunk?)
                        .map_err(|e| object_store::Error::Generic {
                            store: "local file",
                            source: Box::new(e),
                        })?;
                }
                Ok::<(), object_store::Error>(())
            })
            .map_err(|e| Error::remote(&self.url, e))
    }

    /// Uploads the file at `path` to `key` unless something is there already (content
    /// addressed: the same name is the same bytes; readers check them anyway).
    fn upload_file(&self, key: &Key, path: &Path) -> Result<(), Error> {
        let mut file = err::File::open(path).map_err(|e| FsError::new("open", path, e))?;
        self.runtime
            .block_on(async {
                if self.store.head(key).await.is_ok() {
                    return Ok(());
                }
                let upload = self.store.put_multipart(key).await?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
                let mut buffer = vec![0u8; CHUNK];
                loop {
                    let n = file
                        .read(&mut buffer)
                        .map_err(|e| object_store::Error::Generic {
                            store: "local file",
                            source: Box::new(e),
                        })?;
                    if n == 0 {
                        break;
                    }
                    writer.wait_for_capacity(4).await?;
                    writer.write(&buffer[..n]);
                }
                writer.finish().await.map(|_| ())
            })
            .map_err(|e| Error::remote(&self.url, e))
    }

    /// Writes `bytes` at `key` only if nothing is there: `Ok(None)` when written,
    /// `Ok(Some(existing))` when something was.
    fn create(&self, key: &Key, bytes: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let created =
            self.runtime
                .block_on(self.store.put_opts(key, PutPayload::from(bytes), options));
        match created {
            Ok(_) => Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => match self.get_small(key)? {
                Some(existing) => Ok(Some(existing)),
                None => Err(Error::remote(
                    &self.url,
                    std::io::Error::other("refused as existing, then not found"),
                )),
            },
            Err(e) => Err(Error::remote(&self.url, e)),
        }
    }
}

impl Substituter for Bucket {
    fn url(&self) -> &str {
        &self.url
    }

    fn realisation(&self, drv: &DrvHash) -> Result<Option<Vec<u8>>, Error> {
        self.get_small(&Self::record_key(drv))
    }

    fn download_object(&self, record: &Realisation, out: &mut dyn Write) -> Result<(), Error> {
        self.download(&Self::object_key(record), out)
    }

    fn download_layer(&self, record: &Realisation, out: &mut dyn Write) -> Result<(), Error> {
        self.download(&Self::layer_key(record), out)
    }

    fn check_create_only(&self) -> Result<(), Error> {
        let key = Key::from(format!(
            "azb-probe/{}",
            crate::digest::ObjectHash::of(
                format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes()
            )
        ));
        let first = self.create(&key, b"1".to_vec())?;
        let second = self.create(&key, b"2".to_vec())?;
        let _ = self.runtime.block_on(self.store.delete(&key));
        match (first, second) {
            (None, Some(kept)) if kept == b"1" => Ok(()),
            _ => Err(Error::NoCreateOnly {
                url: self.url.clone(),
            }),
        }
    }

    fn upload(&self, record: &Realisation, object: &Path, layer: &Path) -> Result<Pushed, Error> {
        let text = serde_json::to_vec_pretty(record).expect("a realisation serialises");
        let key = Self::record_key(&record.drv);
        if let Some(existing) = self.get_small(&key)? {
            return Ok(Pushed::Present(existing));
        }
        self.upload_file(&Self::object_key(record), object)?;
        self.upload_file(&Self::layer_key(record), layer)?;
        Ok(match self.create(&key, text)? {
            None => Pushed::Uploaded,
            Some(existing) => Pushed::Present(existing),
        })
    }
}
