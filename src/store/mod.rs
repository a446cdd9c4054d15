//! The local content-addressed store (`cache/` by default): artifacts as objects named by
//! the blake3 of their normalized tar, realisations mapping a derivation to its object,
//! the inputs of built derivations, logs, bare source mirrors, locks.
//!
//! Owns the store's files and their invariants: every write goes to tmp/ and is renamed
//! into place, a realisation is written only after its object, every object read is
//! re-hashed and a mismatch is quarantined. Never builds or fetches; callers pass in
//! finished directories and get back verified bytes.

mod error;
mod layout;
mod pack;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::Error;
pub use layout::{LAYOUT_VERSION, Layout};

use crate::digest::{HashingWriter, ObjectHash, Sha256};
use crate::drv::{Derivation, DrvHash};
use crate::fs::{FsError, LockFile, err, write_atomic};
use crate::recipe::{Platform, RecipeName};

/// zstd level for objects: fixed, so the same tar always compresses to the same bytes.
const ZSTD_LEVEL: i32 = 10;

/// A derivation's output as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Realisation {
    /// The derivation.
    pub drv: DrvHash,
    /// Its recipe.
    pub name: RecipeName,
    /// Its platform.
    pub platform: Platform,
    /// The artifact object (blake3 of the uncompressed tar).
    pub object: ObjectHash,
    /// sha256 of the uncompressed tar.
    pub tar_sha256: Sha256,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Size of the compressed object.
    pub compressed_size: u64,
    /// Who built it.
    pub builder: String,
    /// The source commit's time (SOURCE_DATE_EPOCH of the build).
    pub source_time: i64,
    /// How long the build took.
    pub duration_ms: u64,
    /// Signatures over this record (none yet; remote caches add them).
    #[serde(default)]
    pub signatures: Vec<String>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The derivation is built; here are its record and its verified tar.
    Hit(Realisation, Vec<u8>),
    /// Not built.
    Miss,
    /// The object no longer matched its hash: moved to `quarantine`, record removed.
    Corrupt {
        /// The bad object.
        object: ObjectHash,
        /// Where it went.
        quarantine: PathBuf,
    },
}

/// Metadata the builder gives when adding an artifact.
#[derive(Debug, Clone)]
pub struct BuildRecord {
    /// Who built it.
    pub builder: String,
    /// The source commit's time.
    pub source_time: i64,
    /// How long the build took.
    pub duration_ms: u64,
}

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        err::create_dir_all(root).map_err(|e| FsError::new("create store directory", root, e))?;
        // Absolute and free of symlinks: build paths derived from it must match what
        // tools report about themselves (/proc/self/exe).
        let root = &err::canonicalize(root)
            .map_err(|e| FsError::new("resolve store directory", root, e))?;
        let layout = Layout::new(root);
        for dir in layout.dirs() {
            err::create_dir_all(&dir)
                .map_err(|e| FsError::new("create store directory", &dir, e))?;
        }
        let version_file = layout.version_file();
        match err::read_to_string(&version_file) {
            Ok(found) if found.trim() == LAYOUT_VERSION.to_string() => {}
            Ok(found) => {
                return Err(Error::Version {
                    root: root.to_owned(),
                    found: found.trim().to_owned(),
                    expected: LAYOUT_VERSION,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(
                    &layout.tmp(),
                    &version_file,
                    format!("{LAYOUT_VERSION}\n").as_bytes(),
                )?;
            }
            Err(e) => return Err(FsError::new("read", version_file, e).into()),
        }
        Ok(Self { layout })
    }

    /// The store's paths.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Takes the per-derivation lock, so two processes never build the same thing at once.
    pub fn lock(&self, drv: &DrvHash) -> Result<LockFile, Error> {
        Ok(LockFile::acquire(&self.layout.lock(&drv.to_string()))?)
    }

    /// Reads a realisation record without touching its object (cheap; for `plan`).
    pub fn realisation(&self, drv: &DrvHash) -> Result<Option<Realisation>, Error> {
        let path = self.layout.realisation(drv);
        let bytes = match err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::new("read", path, e).into()),
        };
        let record: Realisation =
            serde_json::from_slice(&bytes).map_err(|source| Error::BadRecord { path, source })?;
        Ok(self
            .layout
            .object(&record.object)
            .is_file()
            .then_some(record))
    }

    /// Looks a derivation up and, when present, reads and verifies its artifact.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn lookup(&self, drv: &DrvHash) -> Result<Lookup, Error> {
        let Some(record) = self.realisation(drv)? else {
            return Ok(Lookup::Miss);
        };
        let path = self.layout.object(&record.object);
        let file = err::File::open(&path).map_err(|e| FsError::new("open", &path, e))?;
        let mut tar = Vec::with_capacity(record.tar_size as usize);
        let decoded = zstd::Decoder::new(file).and_then(|mut d| d.read_to_end(&mut tar));
        if decoded.is_err() || ObjectHash::of(&tar) != record.object {
            let quarantine = self.quarantine(&record.object, drv)?;
            return Ok(Lookup::Corrupt {
                object: record.object,
                quarantine,
            });
        }
        Ok(Lookup::Hit(record, tar))
    }

    /// Moves a bad object aside and forgets the realisation that pointed at it.
    fn quarantine(&self, object: &ObjectHash, drv: &DrvHash) -> Result<PathBuf, Error> {
        let from = self.layout.object(object);
        let to = self.layout.quarantine(object);
        err::rename(&from, &to).map_err(|e| FsError::new("quarantine object", &from, e))?;
        let record = self.layout.realisation(drv);
        err::remove_file(&record).map_err(|e| FsError::new("remove realisation", &record, e))?;
        tracing::warn!(%object, %drv, quarantine = %to.display(), "object did not match its hash; quarantined, will rebuild");
        Ok(to)
    }

    /// Packs `dir` into an object (sharing it when identical content exists), then writes
    /// the realisation of `drv`. The object is in place before the record names it.
    #[tracing::instrument(level = "debug", skip(self, dir, record), fields(name = %drv.name))]
    pub fn add_artifact(
        &self,
        drv: &Derivation,
        dir: &Path,
        record: BuildRecord,
    ) -> Result<Realisation, Error> {
        let hash = drv.hash();
        let tmp = tempfile::NamedTempFile::new_in(self.layout.tmp())
            .map_err(|e| FsError::new("create a temp file in", self.layout.tmp(), e))?;
        let encoder = zstd::Encoder::new(tmp.as_file(), ZSTD_LEVEL)
            .map_err(|e| FsError::new("compress into", tmp.path(), e))?;
        let mut hashing = HashingWriter::new(encoder);
        pack::pack_dir(dir, &mut hashing).map_err(|e| match e {
            Error::Fs(fs) => Error::Pack {
                dir: dir.to_owned(),
                drv: hash,
                source: fs.source,
            },
            other => other,
        })?;
        let (encoder, digests) = hashing.finish();
        encoder
            .finish()
            .and_then(|f| f.sync_all())
            .map_err(|e| FsError::new("finish object", tmp.path(), e))?;
        let compressed_size = tmp
            .as_file()
            .metadata()
            .map_err(|e| FsError::new("stat", tmp.path(), e))?
            .len();
        let object_path = self.layout.object(&digests.object);
        if !object_path.is_file() {
            let parent = object_path.parent().expect("object paths have a parent");
            err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
            tmp.persist(&object_path)
                .map_err(|e| FsError::new("move object into", &object_path, e.error))?;
        }
        let realisation = Realisation {
            drv: hash,
            name: drv.name.clone(),
            platform: drv.platform,
            object: digests.object,
            tar_sha256: digests.sha256,
            tar_size: digests.len,
            compressed_size,
            builder: record.builder,
            source_time: record.source_time,
            duration_ms: record.duration_ms,
            signatures: Vec::new(),
        };
        self.write_json(&self.layout.derivation(&hash), drv)?;
        self.write_json(&self.layout.realisation(&hash), &realisation)?;
        Ok(realisation)
    }

    /// The inputs of a derivation built earlier, if recorded.
    pub fn derivation(&self, drv: &DrvHash) -> Result<Option<Derivation>, Error> {
        self.read_json(&self.layout.derivation(drv))
    }

    /// The derivations of the last build on `platform`, by recipe.
    pub fn last_build(&self, platform: Platform) -> Result<BTreeMap<RecipeName, DrvHash>, Error> {
        Ok(self
            .read_json(&self.layout.last_build(platform))?
            .unwrap_or_default())
    }

    /// Records the derivations of a finished build on `platform`.
    pub fn set_last_build(
        &self,
        platform: Platform,
        drvs: &BTreeMap<RecipeName, DrvHash>,
    ) -> Result<(), Error> {
        self.write_json(&self.layout.last_build(platform), drvs)
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec_pretty(value).expect("store records serialise");
        bytes
            .write_all(b"\n")
            .expect("writing to a Vec cannot fail");
        Ok(write_atomic(&self.layout.tmp(), path, &bytes)?)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, Error> {
        match err::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| Error::BadRecord {
                        path: path.to_owned(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new("read", path, e).into()),
        }
    }
}

#[cfg(test)]
mod tests;
