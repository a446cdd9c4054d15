//! The compile cache of builder containers: one ccache directory per recipe, platform and
//! builder in the store (`compile-cache/`), streamed into the container with the build's
//! input and back with its output. A build after a change to one source file recompiles
//! that file only, as a BuildKit cache mount would let it.
//!
//! The cache never changes an artifact: ccache answers only for the same preprocessed
//! source, compiler and flags, and builds run in the same paths every time (a test builds
//! the same derivation with a warm cache and with none and compares the objects). A build
//! sees only its own recipe's cache, and a failed build's cache is dropped. Not part of
//! any hash; `AZB_COMPILE_CACHE=0` turns it off.
//!
//! Owns the cache directory's place, the variables that point ccache at it, and replacing
//! it after a build. What goes in and out of the container is docker.rs's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Error;
use crate::drv::Derivation;
use crate::fs::{FsError, LockFile, err};
use crate::store::Store;

/// Where the cache is in the container.
pub(super) const GUEST_DIR: &str = "/build/ccache";

/// ccache's statistics log of one build (outside the cache, so it does not come back).
pub(super) const STATS_LOG: &str = "/build/tmp/ccache-stats";

/// One recipe's compile cache for one platform and builder.
pub(super) struct CompileCache {
    /// The directory in the store (absent until a build kept one).
    pub dir: PathBuf,
    lock: PathBuf,
    what: String,
}

impl CompileCache {
    /// The cache of `drv`'s builds, unless `AZB_COMPILE_CACHE=0`.
    pub fn of(store: &Store, drv: &Derivation) -> Option<Self> {
        if crate::env::string(crate::env::COMPILE_CACHE).as_deref() == Some("0") {
            return None;
        }
        let dir = store.layout().compile_cache(drv);
        Some(Self {
            lock: store.layout().compile_cache_lock(&dir),
            what: format!("the compile cache of {} for {}", drv.name, drv.platform),
            dir,
        })
    }

    /// Points ccache at the cache: its own size limit, results readable by the build user,
    /// depend mode (the compiler wrapper adds -MD), headers checked by their stat where it
    /// is unchanged, a statistics log of this build.
    pub fn env(env: &mut BTreeMap<String, String>) {
        for (key, value) in [
            ("CCACHE_DIR", GUEST_DIR),
            ("CCACHE_DEPEND", "1"),
            ("CCACHE_STATSLOG", STATS_LOG),
            ("CCACHE_MAXSIZE", "1G"),
            ("CCACHE_UMASK", "022"),
            // A header whose size, mtime and ctime are those the cache recorded is not
            // read again: the builder image's own files keep theirs from one container to
            // the next, and everything a build brings in (source, dependencies, what it
            // generates) is new each time, with a new ctime, so it is read. A hit on
            // PostgreSQL's headers cost 57 ms against 17 ms.
            ("CCACHE_SLOPPINESS", "file_stat_matches"),
        ] {
            env.insert(key.to_owned(), value.to_owned());
        }
    }

    /// Holds the cache still (no build replaces it) while it is read.
    pub fn hold(&self) -> Result<LockFile, Error> {
        Ok(LockFile::acquire(&self.lock, &self.what)?)
    }

    /// Puts `staged` (the directory the build brought back) in the cache's place.
    pub fn keep(&self, staged: &Path) -> Result<(), Error> {
        let _lock = LockFile::acquire(&self.lock, &self.what)?;
        let parent = self.dir.parent().unwrap_or(&self.dir);
        err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
        let old = tempfile::Builder::new()
            .prefix(".old-")
            .tempdir_in(parent)
            .map_err(|e| FsError::new("create a directory in", parent, e))?;
        if self.dir.exists() {
            let aside = old.path().join("cache");
            err::rename(&self.dir, &aside).map_err(|e| FsError::new("move aside", &self.dir, e))?;
        }
        err::rename(staged, &self.dir).map_err(|e| FsError::new("move into", &self.dir, e))?;
        Ok(())
    }
}
