//! The shared remote cache: substituters asked, in order, after the local store and before
//! any source is fetched or build run; the trust rules that decide whether a remote entry
//! may enter the store; pushing what was built.
//!
//! Owns remote transport (behind [`Substituter`]), signing and checking. Never decides
//! what to build (build) and never writes the store but through [`Store::import`], which
//! checks every byte against the record before anything is moved into place.

mod bucket;
mod config;
mod registry;
mod trust;

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub use bucket::Bucket;
pub use config::CacheConfig;
pub use registry::{Registry, pull_base};
pub use trust::{PublicKey, Refusal, SecretKey, Trust, fingerprint};

use crate::drv::{Derivation, DrvHash};
use crate::fs::FsError;
use crate::store::{Realisation, Store};

/// What can go wrong with a remote cache.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A substituter URL that azb cannot use.
    #[diagnostic(help("substituters are file:///DIR, s3://BUCKET/PREFIX or oci://HOST/REPO"))]
    #[error("cannot use the cache `{url}`: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The remote failed (after its retries).
    #[error("the cache `{url}` failed")]
    Remote {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `cache.ron` cannot be read.
    #[diagnostic(help(
        "cache.ron is Cache(substituters: [\"file:///DIR\"], trusted_keys: [\"NAME:HEX\"], push_to: None)"
    ))]
    #[error("cannot read the cache settings `{path}`: {why}")]
    BadConfig {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// A key that cannot be read.
    #[diagnostic(help(
        "keys are NAME:HEX as `azb cache keygen NAME` writes them (the public one on stdout, the secret one in its file)"
    ))]
    #[error("bad {what}: {why}")]
    BadKey {
        /// Which kind of key.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// The server accepted an overwrite that should have been refused.
    #[error(
        "the cache `{url}` does not refuse overwrites (If-None-Match is ignored); azb will not push to it, since two writers could replace each other's entries"
    )]
    NoCreateOnly {
        /// The URL.
        url: String,
    },
}

impl Error {
    fn remote(url: &str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Remote {
            url: url.to_owned(),
            source: Box::new(source),
        }
    }
}

/// What pushing one realisation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Files and record uploaded.
    Uploaded,
    /// A record for the derivation was there already (its bytes).
    Present(Vec<u8>),
}

/// One remote cache.
pub trait Substituter: Send + Sync {
    /// Its URL, as configured.
    fn url(&self) -> &str;
    /// The record of `drv` as stored remotely (unchecked), or `None`.
    fn realisation(&self, drv: &DrvHash) -> Result<Option<Vec<u8>>, Error>;
    /// Streams the object file (zstd) of `record` into `out`.
    fn download_object(&self, record: &Realisation, out: &mut dyn Write) -> Result<(), Error>;
    /// Streams the layer blob (gzip) of `record` into `out`.
    fn download_layer(&self, record: &Realisation, out: &mut dyn Write) -> Result<(), Error>;
    /// Fails unless the server refuses to overwrite an existing key.
    fn check_create_only(&self) -> Result<(), Error>;
    /// Uploads the object and layer files, then the record (create-only).
    fn upload(&self, record: &Realisation, object: &Path, layer: &Path) -> Result<Pushed, Error>;
}

/// Opens a substituter by URL scheme: `oci://` a registry, else object storage.
pub fn open(url: &str) -> Result<Box<dyn Substituter>, Error> {
    if url.starts_with("oci://") {
        return Ok(Box::new(Registry::open(url)?));
    }
    Ok(Box::new(Bucket::open(url)?))
}

/// Where a derivation can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The substituter's URL.
    pub url: String,
    /// Its checked record.
    pub record: Realisation,
}

/// Checks the form of a substituter URL without opening it.
pub fn check_url(url: &str) -> Result<(), Error> {
    if url.starts_with("oci://") {
        return Registry::check(url).map(|_| ());
    }
    Bucket::check(url)
}

/// A substituter, opened the first time it is asked (a client with TLS roots costs tens of
/// milliseconds: a build that finds everything in the store never pays it).
struct Slot {
    url: String,
    opened: std::sync::OnceLock<Result<Box<dyn Substituter>, String>>,
}

/// The configured substituters and the keys they are checked against.
pub struct Remote {
    substituters: Vec<Slot>,
    trust: Trust,
    /// Substituters that failed in this run: not asked again.
    down: Mutex<Vec<bool>>,
}

impl Remote {
    /// Substituters in the order given.
    pub fn new(substituters: Vec<Box<dyn Substituter>>, trust: Trust) -> Self {
        let slots = substituters
            .into_iter()
            .map(|s| Slot {
                url: s.url().to_owned(),
                opened: std::sync::OnceLock::from(Ok(s)),
            })
            .collect();
        Self::with_slots(slots, trust)
    }

    fn with_slots(substituters: Vec<Slot>, trust: Trust) -> Self {
        let down = Mutex::new(vec![false; substituters.len()]);
        Self {
            substituters,
            trust,
            down,
        }
    }

    /// The substituters of `config` (checked, opened when first asked) and its keys.
    pub fn from_config(config: &CacheConfig) -> Result<Self, Error> {
        let slots = config
            .substituters
            .iter()
            .map(|url| {
                check_url(url)?;
                Ok(Slot {
                    url: url.clone(),
                    opened: std::sync::OnceLock::new(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self::with_slots(slots, config.trust()?))
    }

    /// Whether there is nothing to ask.
    pub fn is_empty(&self) -> bool {
        self.substituters.is_empty()
    }

    /// Substituter `index`, opened if it was not; `None` (after one warning) if it is down.
    fn substituter(&self, index: usize, warn: &dyn Fn(&str)) -> Option<&dyn Substituter> {
        if self.down.lock().expect("no panics while held")[index] {
            return None;
        }
        let slot = &self.substituters[index];
        match slot
            .opened
            .get_or_init(|| open(&slot.url).map_err(|e| chain(&e)))
        {
            Ok(substituter) => Some(substituter.as_ref()),
            Err(error) => {
                self.give_up(index, error, warn);
                None
            }
        }
    }

    /// Marks substituter `index` down for the rest of the run, with one warning.
    fn give_up(&self, index: usize, error: &str, warn: &dyn Fn(&str)) {
        let mut down = self.down.lock().expect("no panics while held");
        if !down[index] {
            down[index] = true;
            warn(&format!("{error}; not asking it again in this run"));
        }
    }

    /// The first substituter holding a trusted entry for `drv`. Refusals and failures are
    /// passed to `warn` (a failed substituter is not asked again in this run).
    pub fn find(&self, drv: &DrvHash, warn: &dyn Fn(&str)) -> Option<Found> {
        for index in 0..self.substituters.len() {
            let Some(substituter) = self.substituter(index, warn) else {
                continue;
            };
            let url = substituter.url();
            let bytes = match substituter.realisation(drv) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue,
                Err(error) => {
                    self.give_up(index, &chain(&error), warn);
                    continue;
                }
            };
            let record = match serde_json::from_slice::<Realisation>(&bytes) {
                Ok(record) if record.drv == *drv => record,
                Ok(record) => {
                    warn(&format!(
                        "refused the entry for {drv} from {url}: it describes derivation {}",
                        record.drv
                    ));
                    continue;
                }
                Err(error) => {
                    warn(&format!(
                        "refused the entry for {drv} from {url}: not a realisation ({error})"
                    ));
                    continue;
                }
            };
            match self.trust.check(&record) {
                Ok(_) => {
                    return Some(Found {
                        url: url.to_owned(),
                        record,
                    });
                }
                Err(refusal) => {
                    warn(&format!(
                        "refused the entry for {drv} ({} {}) from {url}: {refusal}",
                        record.name, record.platform
                    ));
                }
            }
        }
        None
    }

    /// Puts `drv` into the store from the first substituter that has a trusted entry whose
    /// files match it; `None` when none does (then it is built). Everything that goes wrong
    /// is a warning, never an error: the build goes on locally.
    pub fn substitute(
        &self,
        store: &Store,
        drv: &Derivation,
        warn: &dyn Fn(&str),
    ) -> Option<Found> {
        let hash = drv.hash();
        let found = self.find(&hash, warn)?;
        let substituter = (0..self.substituters.len())
            .filter(|&i| self.substituters[i].url == found.url)
            .find_map(|i| self.substituter(i, warn))?;
        let fetched = (|| -> Result<(), Error> {
            let mut object = store.temp_file()?;
            substituter.download_object(&found.record, object.as_file_mut())?;
            let mut layer = store.temp_file()?;
            substituter.download_layer(&found.record, layer.as_file_mut())?;
            store.import(drv, &found.record, object, layer)?;
            Ok(())
        })();
        match fetched {
            Ok(()) => Some(found),
            Err(error) => {
                warn(&format!(
                    "could not substitute {hash} ({} {}) from {}: {}; building it",
                    drv.name,
                    drv.platform,
                    found.url,
                    chain(&error)
                ));
                None
            }
        }
    }
}

/// What pushing one derivation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Signed and uploaded.
    Uploaded,
    /// The remote had the same entry already.
    Present,
    /// The remote has another output for the same derivation: a build is not
    /// deterministic. Nothing was overwritten.
    Differs {
        /// The remote's record.
        remote: Box<Realisation>,
    },
    /// The store does not hold it (or it was damaged and quarantined).
    Missing,
}

/// Signs and uploads the realisations of `drvs` from `store` to `target`: checks first that
/// `target` refuses overwrites; then per derivation its files, then its signed record.
/// The local record keeps the signature.
pub fn push(
    store: &Store,
    target: &dyn Substituter,
    key: &SecretKey,
    drvs: &[DrvHash],
) -> Result<Vec<(DrvHash, PushOutcome)>, Error> {
    target.check_create_only()?;
    let mut out = Vec::new();
    for drv in drvs {
        let crate::store::Lookup::Hit(record) = store.lookup(drv)? else {
            out.push((*drv, PushOutcome::Missing));
            continue;
        };
        let mut record = *record;
        let own = format!("{}:", key.public().name());
        record.signatures.retain(|s| !s.starts_with(&own));
        record.signatures.push(key.sign(&record));
        record.signatures.sort();
        let outcome = match target.upload(
            &record,
            &store.object_path(&record),
            &store.layer_path(&record),
        )? {
            Pushed::Uploaded => PushOutcome::Uploaded,
            Pushed::Present(bytes) => match serde_json::from_slice::<Realisation>(&bytes) {
                Ok(remote) if fingerprint(&remote) == fingerprint(&record) => PushOutcome::Present,
                Ok(remote) => PushOutcome::Differs {
                    remote: Box::new(remote),
                },
                Err(error) => {
                    return Err(Error::remote(target.url(), error));
                }
            },
        };
        store.set_signatures(&record)?;
        out.push((*drv, outcome));
    }
    Ok(out)
}

/// The current-thread runtime a remote client runs on (kept inside this module).
fn runtime(url: &str) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::remote(url, e))
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
