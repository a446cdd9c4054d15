//! The local content-addressed store (`cache/` by default): artifacts as objects named by
//! the blake3 of their normalized tar, each with its image layer (gzip, as the image carries
//! it) named by its sha256; realisations mapping a derivation to both; the inputs of built
//! derivations, logs, bare source mirrors, locks.
//!
//! Owns the store's files and their invariants: every write goes to tmp/ and is renamed
//! into place, a realisation is written only after its object and layer, a lookup re-hashes
//! both (streaming; nothing is held in memory) and moves a mismatch, or a record that cannot
//! be read, to `quarantine/`. Never builds or fetches; callers pass in finished directories
//! and read verified objects back as streams.

mod error;
mod layout;
mod pack;

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::Error;
pub use layout::{LAYOUT_VERSION, Layout};

use crate::digest::{HashingWriter, ObjectHash, Sha256};
use crate::drv::{Derivation, DrvHash};
use crate::fs::{FsError, LockFile, err, write_atomic};
use crate::layer::LayerDigests;
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
    /// The artifact's image layer: its diff_id, blob digest and blob size.
    pub layer: LayerDigests,
    /// Who built it.
    pub builder: String,
    /// The source commit's time (SOURCE_DATE_EPOCH of the build; the layer's mtimes).
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
    /// The derivation is built; its object and layer matched their hashes just now.
    Hit(Box<Realisation>),
    /// Not built.
    Miss,
    /// Its object, layer or record was damaged: moved to `quarantine`, record removed.
    Corrupt {
        /// What was damaged (`object <hash>`, `layer <digest>`, `realisation`).
        what: String,
        /// Where it went.
        quarantine: PathBuf,
    },
}

/// Opens an object file (`Layout::object`) as its uncompressed tar stream. Its content is
/// not checked here: [`Store::lookup`] checks it.
pub fn read_object(path: &Path) -> Result<impl Read + use<>, FsError> {
    let file = err::File::open(path).map_err(|e| FsError::new("open", path, e))?;
    zstd::Decoder::with_buffer(BufReader::new(file))
        .map_err(|e| FsError::new("decompress", path, e))
}

/// What a realisation's files looked like when they were last found sound: the record's
/// blake3, then size, modification and change times (ns) and inode of the object and of the
/// layer blob. Rewriting a file in place changes its change time, which no user can set,
/// so a file edited since it was hashed is hashed again.
struct Stamp(String);

impl Stamp {
    fn of(record: &[u8], object: &Path, blob: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let stat = |path: &Path| {
            err::metadata(path).ok().map(|m| {
                format!(
                    "{} {}.{} {}.{} {}",
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino()
                )
            })
        };
        Some(Self(format!(
            "{}\n{}\n{}\n",
            blake3::hash(record).to_hex(),
            stat(object)?,
            stat(blob)?
        )))
    }
}

/// What [`Store::check`] found.
#[derive(Debug)]
pub enum Check {
    /// No realisation, or its files are gone.
    Missing,
    /// Every file matches its hash.
    Sound(Box<Realisation>),
    /// Something is damaged.
    Damaged(Damage),
}

/// A damaged store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// What it is (`object <hash>`, `layer sha256:<hex>`, `realisation`).
    pub what: String,
    /// The file.
    pub path: PathBuf,
    /// Its name in `quarantine/`.
    name: String,
}

/// What [`Store::gc`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Realisation records (with their derivation records).
    pub realisations: u64,
    /// Object files.
    pub objects: u64,
    /// Layer blobs.
    pub blobs: u64,
    /// Bytes freed by objects and blobs.
    pub bytes: u64,
    /// Compile caches (no kept derivation builds with their recipe, platform and
    /// builder).
    pub compile_caches: u64,
}

/// What a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Realisation records.
    pub realisations: u64,
    /// Object files.
    pub objects: u64,
    /// Their bytes (compressed).
    pub object_bytes: u64,
    /// Layer blobs.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
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

    /// Takes the per-derivation lock, so two processes never build the same thing at once;
    /// `what` names the build in a message about waiting.
    pub fn lock(&self, drv: &DrvHash, what: &str) -> Result<LockFile, Error> {
        Ok(LockFile::acquire(
            &self.layout.lock(&drv.to_string()),
            what,
        )?)
    }

    /// Reads a realisation record without touching its files (cheap; for `plan`). A
    /// record that cannot be read, or whose object or layer is gone, counts as absent
    /// ([`Store::lookup`] moves it aside).
    pub fn realisation(&self, drv: &DrvHash) -> Result<Option<Realisation>, Error> {
        Ok(match self.read_record(drv)? {
            Some(Ok(record)) if self.files_present(&record) => Some(record),
            _ => None,
        })
    }

    /// The record of `drv`: `None` when there is none, `Some(Err)` when it cannot be read.
    fn read_record(
        &self,
        drv: &DrvHash,
    ) -> Result<Option<Result<Realisation, serde_json::Error>>, Error> {
        let path = self.layout.realisation(drv);
        match err::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new("read", path, e).into()),
        }
    }

    fn files_present(&self, record: &Realisation) -> bool {
        self.layout.object(&record.object).is_file()
            && self.layout.blob(&record.layer.digest).is_file()
    }

    /// Looks a derivation up and, when present, makes sure its object and layer are sound:
    /// files that look exactly as when they were last re-hashed on this machine (same
    /// record bytes, sizes, modification and change times, inodes: see [`Stamp`]) are
    /// trusted; others are re-hashed (streaming) and, when sound, stamped. Damage of any of
    /// the three files is quarantined and reported as [`Lookup::Corrupt`].
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn lookup(&self, drv: &DrvHash) -> Result<Lookup, Error> {
        if let Some(record) = self.stamped(drv) {
            return Ok(Lookup::Hit(Box::new(record)));
        }
        match self.check(drv)? {
            Check::Missing => Ok(Lookup::Miss),
            Check::Sound(record) => {
                self.stamp(drv, &record);
                Ok(Lookup::Hit(record))
            }
            Check::Damaged(damage) => Ok(Lookup::Corrupt {
                quarantine: self.quarantine_damage(drv, &damage)?,
                what: damage.what,
            }),
        }
    }

    /// The record of `drv` when its files are as its stamp says (else `None`: re-hash).
    fn stamped(&self, drv: &DrvHash) -> Option<Realisation> {
        let stamp = err::read_to_string(self.layout.verified(drv)).ok()?;
        let bytes = err::read(self.layout.realisation(drv)).ok()?;
        let record: Realisation = serde_json::from_slice(&bytes).ok()?;
        let now = Stamp::of(
            &bytes,
            &self.layout.object(&record.object),
            &self.layout.blob(&record.layer.digest),
        )?;
        (now.0 == stamp).then_some(record)
    }

    /// Records that `drv`'s files were re-hashed and found sound as they are now. Best
    /// effort: without a stamp the next lookup re-hashes.
    fn stamp(&self, drv: &DrvHash, record: &Realisation) {
        let Ok(bytes) = err::read(self.layout.realisation(drv)) else {
            return;
        };
        let object = self.layout.object(&record.object);
        let blob = self.layout.blob(&record.layer.digest);
        if let Some(stamp) = Stamp::of(&bytes, &object, &blob)
            && let Err(error) = write_atomic(
                &self.layout.tmp(),
                &self.layout.verified(drv),
                stamp.0.as_bytes(),
            )
        {
            tracing::debug!(%drv, %error, "cannot stamp");
        }
    }

    /// Re-hashes the files of `drv`'s realisation, changing nothing.
    pub fn check(&self, drv: &DrvHash) -> Result<Check, Error> {
        let record = match self.read_record(drv)? {
            None => return Ok(Check::Missing),
            Some(Ok(record)) => record,
            Some(Err(error)) => {
                tracing::debug!(%drv, %error, "realisation unreadable");
                return Ok(Check::Damaged(Damage {
                    what: "realisation".to_owned(),
                    path: self.layout.realisation(drv),
                    name: format!("{drv}.json"),
                }));
            }
        };
        if !self.files_present(&record) {
            return Ok(Check::Missing);
        }
        let object = self.layout.object(&record.object);
        let found = read_object(&object).and_then(|mut tar| {
            let mut hashing = HashingWriter::new(io::sink());
            io::copy(&mut tar, &mut hashing).map_err(|e| FsError::new("read", &object, e))?;
            Ok(hashing.finish().1.object)
        });
        if !found.is_ok_and(|hash| hash == record.object) {
            return Ok(Check::Damaged(Damage {
                what: format!("object {}", record.object),
                name: record.object.to_string(),
                path: object,
            }));
        }
        let blob = self.layout.blob(&record.layer.digest);
        let found = err::File::open(&blob).and_then(|mut file| {
            let mut hashing = HashingWriter::new(io::sink());
            io::copy(&mut file, &mut hashing)?;
            Ok(hashing.finish().1)
        });
        if !found.is_ok_and(|d| d.sha256 == record.layer.digest && d.len == record.layer.size) {
            return Ok(Check::Damaged(Damage {
                what: format!("layer sha256:{}", record.layer.digest),
                name: format!("sha256-{}", record.layer.digest),
                path: blob,
            }));
        }
        Ok(Check::Sound(Box::new(record)))
    }

    /// Moves the damaged file aside and forgets the realisation; returns where it went.
    pub fn quarantine_damage(&self, drv: &DrvHash, damage: &Damage) -> Result<PathBuf, Error> {
        let to = self.quarantine(&damage.path, &damage.name)?;
        self.forget(drv)?;
        Ok(to)
    }

    /// Every derivation with a realisation record, sorted.
    pub fn realised(&self) -> Result<Vec<DrvHash>, Error> {
        let dir = self.layout.root().join("realisations");
        let mut out = Vec::new();
        for entry in crate::fs::sorted_entries(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(hash) = name.strip_suffix(".json").and_then(|h| h.parse().ok()) {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Deletes what no derivation in `keep` needs: realisation and derivation records of
    /// other derivations, then objects and layer blobs no kept record names, then compile
    /// caches no kept derivation builds with. Files changed within `grace` stay (a build
    /// running now writes its files before its record), and two collections never run at
    /// once. Never touches sources, logs, tools or debs.
    pub fn gc(
        &self,
        keep: &std::collections::BTreeSet<DrvHash>,
        grace: std::time::Duration,
    ) -> Result<GcReport, Error> {
        let _lock = LockFile::acquire(&self.layout.lock("gc"), "garbage collection")?;
        let now = std::time::SystemTime::now();
        let old = |path: &Path| -> Result<bool, Error> {
            let meta = err::metadata(path).map_err(|e| FsError::new("stat", path, e))?;
            let modified = meta
                .modified()
                .map_err(|e| FsError::new("read the time of", path, e))?;
            Ok(now.duration_since(modified).unwrap_or_default() >= grace)
        };
        let mut report = GcReport::default();
        let (mut objects, mut blobs) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        for drv in self.realised()? {
            let path = self.layout.realisation(&drv);
            let record = self.read_record(&drv)?.and_then(Result::ok);
            if keep.contains(&drv) || !old(&path)? {
                if let Some(record) = record {
                    objects.insert(record.object);
                    blobs.insert(record.layer.digest);
                }
                continue;
            }
            for file in [
                path,
                self.layout.derivation(&drv),
                self.layout.verified(&drv),
            ] {
                match err::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(FsError::new("remove", &file, e).into()),
                }
            }
            report.realisations += 1;
        }
        let mut remove = |path: PathBuf, blob: bool| -> Result<(), Error> {
            if !old(&path)? {
                return Ok(());
            }
            let size = err::metadata(&path)
                .map_err(|e| FsError::new("stat", &path, e))?
                .len();
            err::remove_file(&path).map_err(|e| FsError::new("remove", &path, e))?;
            if blob {
                report.blobs += 1;
            } else {
                report.objects += 1;
            }
            report.bytes += size;
            Ok(())
        };
        for shard in crate::fs::sorted_entries(&self.layout.root().join("objects"))? {
            for entry in crate::fs::sorted_entries(&shard.path())? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.parse().is_ok_and(|h: ObjectHash| objects.contains(&h)) {
                    remove(entry.path(), false)?;
                }
            }
        }
        for entry in crate::fs::sorted_entries(&self.layout.root().join("blobs/sha256"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.parse().is_ok_and(|h: Sha256| blobs.contains(&h)) {
                remove(entry.path(), true)?;
            }
        }
        report.compile_caches = self.gc_compile_caches(keep, &old)?;
        Ok(report)
    }

    /// Removes the compile caches that no derivation of `keep` (with a record here) builds
    /// with, unless `old` says they changed lately; returns how many.
    fn gc_compile_caches(
        &self,
        keep: &std::collections::BTreeSet<DrvHash>,
        old: &dyn Fn(&Path) -> Result<bool, Error>,
    ) -> Result<u64, Error> {
        let caches = self.layout.compile_caches();
        if !caches.is_dir() {
            return Ok(0);
        }
        let mut kept = std::collections::BTreeSet::new();
        for drv in keep {
            if let Some(derivation) = self.derivation(drv)? {
                kept.insert(self.layout.compile_cache(&derivation));
            }
        }
        let mut removed = 0;
        for entry in crate::fs::sorted_entries(&caches)? {
            let path = entry.path();
            // `.old-*`: a build's swap in progress, its own to remove.
            let swap = entry.file_name().to_string_lossy().starts_with('.');
            if swap || kept.contains(&path) {
                continue;
            }
            // Under the cache's lock, no build reads or replaces it; its age is read there.
            let _lock = LockFile::acquire(
                &self.layout.compile_cache_lock(&path),
                "a compile cache (to collect it)",
            )?;
            if !path.is_dir() || !old(&path)? {
                continue;
            }
            err::remove_dir_all(&path).map_err(|e| FsError::new("remove", &path, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Moves a damaged file aside as `quarantine/<name>`.
    fn quarantine(&self, from: &Path, name: &str) -> Result<PathBuf, Error> {
        let to = self.layout.quarantine(name);
        err::rename(from, &to).map_err(|e| FsError::new("quarantine", from, e))?;
        // The caller reports it (once, with the derivation's name).
        tracing::debug!(from = %from.display(), quarantine = %to.display(), "damaged store file quarantined");
        Ok(to)
    }

    /// Removes the realisation of `drv` (its files stay for whoever shares them).
    fn forget(&self, drv: &DrvHash) -> Result<(), Error> {
        let record = self.layout.realisation(drv);
        match err::remove_file(&record) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::new("remove realisation", &record, e).into()),
        }
    }

    /// The object file of a realisation (zstd tar; [`read_object`] opens it).
    pub fn object_path(&self, record: &Realisation) -> PathBuf {
        self.layout.object(&record.object)
    }

    /// The layer blob of a realisation (gzip, as the image carries it).
    pub fn layer_path(&self, record: &Realisation) -> PathBuf {
        self.layout.blob(&record.layer.digest)
    }

    /// Packs `dir` into an object and its image layer (sharing files when identical content
    /// exists), then writes the realisation of `drv`. Both files are in place before the
    /// record names them. Streams file by file: no artifact is held in memory.
    #[tracing::instrument(level = "debug", skip(self, dir, record), fields(name = %drv.name))]
    pub fn add_artifact(
        &self,
        drv: &Derivation,
        dir: &Path,
        record: BuildRecord,
    ) -> Result<Realisation, Error> {
        let hash = drv.hash();
        let tmp_dir = self.layout.tmp();
        let temp = || {
            crate::fs::temp_file_in(&tmp_dir)
                .map_err(|e| FsError::new("create a temp file in", &tmp_dir, e))
        };
        let object_tmp = temp()?;
        let encoder = zstd::Encoder::new(io::BufWriter::new(object_tmp.as_file()), ZSTD_LEVEL)
            .map_err(|e| FsError::new("compress into", object_tmp.path(), e))?;
        let (encoder, digests) = pack::pack_dir(dir, HashingWriter::new(encoder))?.finish();
        encoder
            .finish()
            .and_then(|mut w| w.flush())
            .and_then(|()| object_tmp.as_file().sync_all())
            .map_err(|e| FsError::new("finish object", object_tmp.path(), e))?;
        let compressed_size = object_tmp
            .as_file()
            .metadata()
            .map_err(|e| FsError::new("stat", object_tmp.path(), e))?
            .len();
        let layer_tmp = temp()?;
        let (out, layer) = crate::layer::artifact_layer(
            drv.name.as_str(),
            dir,
            drv.platform,
            drv.pg_major,
            record.source_time,
            io::BufWriter::new(layer_tmp.as_file()),
        )?;
        drop(out);
        layer_tmp
            .as_file()
            .sync_all()
            .map_err(|e| FsError::new("finish layer", layer_tmp.path(), e))?;
        persist(object_tmp, &self.layout.object(&digests.object))?;
        persist(layer_tmp, &self.layout.blob(&layer.digest))?;
        let realisation = Realisation {
            drv: hash,
            name: drv.name.clone(),
            platform: drv.platform,
            object: digests.object,
            tar_sha256: digests.sha256,
            tar_size: digests.len,
            compressed_size,
            layer,
            builder: record.builder,
            source_time: record.source_time,
            duration_ms: record.duration_ms,
            signatures: Vec::new(),
        };
        self.write_json(&self.layout.derivation(&hash), drv)?;
        self.write_json(&self.layout.realisation(&hash), &realisation)?;
        Ok(realisation)
    }

    /// A temp file in the store's `tmp/` (same file system as its objects), for
    /// [`Store::import`].
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, Error> {
        let tmp = self.layout.tmp();
        crate::fs::temp_file_in(&tmp)
            .map_err(|e| FsError::new("create a temp file in", &tmp, e).into())
    }

    /// Puts a realisation made elsewhere into the store: `object` (a zstd object file) and
    /// `layer` (its gzip layer blob), temp files from [`Store::temp_file`], are checked
    /// against `record` (blake3 and size of the decompressed tar; sha256 and size of the
    /// blob) before anything moves into place; the record is written last. On a mismatch
    /// nothing enters the store.
    pub fn import(
        &self,
        drv: &Derivation,
        record: &Realisation,
        object: tempfile::NamedTempFile,
        layer: tempfile::NamedTempFile,
    ) -> Result<(), Error> {
        let hash = drv.hash();
        let mismatch = |what: String| Error::Mismatch { drv: hash, what };
        if record.drv != hash || record.name != drv.name || record.platform != drv.platform {
            return Err(mismatch(format!(
                "the record describes {} {} ({})",
                record.name, record.platform, record.drv
            )));
        }
        let found = read_object(object.path()).and_then(|mut tar| {
            let mut hashing = HashingWriter::new(io::sink());
            io::copy(&mut tar, &mut hashing).map_err(|e| FsError::new("read", object.path(), e))?;
            Ok(hashing.finish().1)
        });
        match found {
            Ok(d) if d.object == record.object && d.len == record.tar_size => {}
            Ok(d) => {
                return Err(mismatch(format!(
                    "the object is {} ({} bytes), the record says {} ({} bytes)",
                    d.object, d.len, record.object, record.tar_size
                )));
            }
            Err(e) => return Err(mismatch(format!("the object cannot be read: {e}"))),
        }
        let blob = err::File::open(layer.path()).and_then(|mut f| {
            let mut hashing = HashingWriter::new(io::sink());
            io::copy(&mut f, &mut hashing)?;
            Ok(hashing.finish().1)
        });
        match blob {
            Ok(d) if d.sha256 == record.layer.digest && d.len == record.layer.size => {}
            Ok(d) => {
                return Err(mismatch(format!(
                    "the layer is sha256:{} ({} bytes), the record says sha256:{} ({} bytes)",
                    d.sha256, d.len, record.layer.digest, record.layer.size
                )));
            }
            Err(e) => return Err(mismatch(format!("the layer cannot be read: {e}"))),
        }
        persist(object, &self.layout.object(&record.object))?;
        persist(layer, &self.layout.blob(&record.layer.digest))?;
        self.write_json(&self.layout.derivation(&hash), drv)?;
        self.write_json(&self.layout.realisation(&hash), record)?;
        Ok(())
    }

    /// Replaces the signatures of the realisation of `drv` (after pushing it signed).
    pub fn set_signatures(&self, record: &Realisation) -> Result<(), Error> {
        self.write_json(&self.layout.realisation(&record.drv), record)
    }

    /// Counts what the store holds (records, objects, layer blobs and their sizes).
    pub fn stats(&self) -> Result<Stats, Error> {
        fn files(dir: &Path, depth: usize) -> Result<(u64, u64), FsError> {
            let (mut count, mut bytes) = (0, 0);
            for entry in crate::fs::sorted_entries(dir)? {
                let path = entry.path();
                let meta = err::metadata(&path).map_err(|e| FsError::new("stat", &path, e))?;
                if meta.is_dir() && depth > 0 {
                    let (c, b) = files(&path, depth - 1)?;
                    count += c;
                    bytes += b;
                } else if meta.is_file() {
                    count += 1;
                    bytes += meta.len();
                }
            }
            Ok((count, bytes))
        }
        let root = self.layout.root();
        let (realisations, _) = files(&root.join("realisations"), 0)?;
        let (objects, object_bytes) = files(&root.join("objects"), 1)?;
        let (blobs, blob_bytes) = files(&root.join("blobs/sha256"), 0)?;
        Ok(Stats {
            realisations,
            objects,
            object_bytes,
            blobs,
            blob_bytes,
        })
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
        // A no-op build leaves it as it is: no write, no fsync.
        if self.last_build(platform)? == *drvs {
            return Ok(());
        }
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

/// Moves a finished temp file to `path`, unless a file with the same content (same name) is
/// already there.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), Error> {
    if path.is_file() {
        return Ok(());
    }
    let parent = path.parent().expect("store file paths have a parent");
    err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    tmp.persist(path)
        .map_err(|e| FsError::new("move into the store", path, e.error))?;
    Ok(())
}
