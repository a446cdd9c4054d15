//! Where everything lives in a store directory, and the layout's version. The one place
//! that knows these names.

use std::path::{Path, PathBuf};

use crate::digest::{ObjectHash, Sha256};
use crate::drv::{Derivation, DrvHash};
use crate::recipe::Platform;

/// Version of the on-disk layout; written to `<root>/store-version`.
pub const LAYOUT_VERSION: u32 = 2;

/// Paths inside one store root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the store at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directories created when the store is opened.
    pub fn dirs(&self) -> [PathBuf; 11] {
        [
            "objects",
            "blobs/sha256",
            "realisations",
            "verified",
            "derivations",
            "roots",
            "sources",
            "logs",
            "tmp",
            "locks",
            "quarantine",
        ]
        .map(|d| self.root.join(d))
    }

    /// The file recording the layout version.
    pub fn version_file(&self) -> PathBuf {
        self.root.join("store-version")
    }

    /// `objects/<first 2 hex>/<hex>`: a zstd-compressed tar named by its content's blake3.
    pub fn object(&self, hash: &ObjectHash) -> PathBuf {
        let hex = hash.to_string();
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    /// `blobs/sha256/<hex>`: an artifact's image layer (gzip), named by its digest, as an
    /// OCI image layout names blobs.
    pub fn blob(&self, digest: &Sha256) -> PathBuf {
        self.root
            .join("blobs")
            .join("sha256")
            .join(digest.to_string())
    }

    /// `bases/<sha256 hex>/`: a base image pulled from a registry by digest, as an OCI
    /// layout whose image is named `base`.
    pub fn base(&self, digest: &str) -> PathBuf {
        self.root.join("bases").join(digest)
    }

    /// `realisations/<drv>.json`.
    pub fn realisation(&self, drv: &DrvHash) -> PathBuf {
        self.root.join("realisations").join(format!("{drv}.json"))
    }

    /// `derivations/<drv>.json`: the inputs of a derivation that was built.
    pub fn derivation(&self, drv: &DrvHash) -> PathBuf {
        self.root.join("derivations").join(format!("{drv}.json"))
    }

    /// `roots/last-build-<arch>.json`: recipe name -> drv of the last build per platform.
    pub fn last_build(&self, platform: Platform) -> PathBuf {
        self.root
            .join("roots")
            .join(format!("last-build-{}.json", platform.oci_arch()))
    }

    /// `sources/<blake3(url)>.git`: a bare mirror of one upstream URL.
    pub fn source_mirror(&self, url: &str) -> PathBuf {
        self.root
            .join("sources")
            .join(format!("{}.git", ObjectHash::of(url.as_bytes())))
    }

    /// `logs/<drv>.log`: the full log of a derivation's last build.
    pub fn log(&self, drv: &DrvHash) -> PathBuf {
        self.root.join("logs").join(format!("{drv}.log"))
    }

    /// `locks/<name>.lock`.
    pub fn lock(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// `tools/<name>-<version>/`: build tools installed per version, such as cargo-pgrx
    /// (`tools/cargo-pgrx-0.16.1/bin/cargo-pgrx`). Kept between builds; never in an image.
    pub fn tool(&self, name: &str, version: &str) -> PathBuf {
        self.root.join("tools").join(format!("{name}-{version}"))
    }

    /// `compile-cache/<recipe>-<arch>-<builder>/`: the ccache directory of one recipe's
    /// builds for one platform in one builder (used by the docker executor, collected by
    /// gc). Outputs never depend on it: ccache answers only for the same preprocessed
    /// source, compiler and flags. `builder` is the first 16 hex digits of blake3 of the
    /// builder identity.
    pub fn compile_cache(&self, drv: &Derivation) -> PathBuf {
        let builder = blake3::hash(drv.builder.as_str().as_bytes()).to_hex();
        self.compile_caches().join(format!(
            "{}-{}-{}",
            drv.name,
            drv.platform.oci_arch(),
            &builder[..16]
        ))
    }

    /// `compile-cache/`: every recipe's compile caches.
    pub fn compile_caches(&self) -> PathBuf {
        self.root.join("compile-cache")
    }

    /// The lock a compile cache is read and replaced under.
    pub fn compile_cache_lock(&self, cache: &Path) -> PathBuf {
        let key = cache.file_name().unwrap_or_default().to_string_lossy();
        self.lock(&format!("compile-cache-{key}"))
    }

    /// `cargo/`: the CARGO_HOME of Rust builds: the crates their Cargo.lock pins (checked
    /// by checksum), fetched before builds, read offline by them.
    pub fn cargo_home(&self) -> PathBuf {
        self.root.join("cargo")
    }

    /// `debs/<sha256>.deb`: Debian packages of the images' runtime layers, as downloaded and
    /// checked against builders.lock (owned by fetch). Kept between builds.
    pub fn deb(&self, sha256: &str) -> PathBuf {
        self.root.join("debs").join(format!("{sha256}.deb"))
    }

    /// `verified/<drv>`: when the files of `drv`'s realisation were last re-hashed and
    /// found sound, what they looked like (record hash, sizes, times, inodes); this
    /// machine's own, never shared.
    pub fn verified(&self, drv: &DrvHash) -> PathBuf {
        self.root.join("verified").join(drv.to_string())
    }

    /// `memo/`: what image assembly learnt of its inputs, named by their digests (a base
    /// image's file list), so the next assembly skips reading them (owned by image).
    pub fn memo(&self) -> PathBuf {
        self.root.join("memo")
    }

    /// `containers/`: the builder containers a run left running for the next one, a file
    /// each (`taken/`: claimed by a running process); owned by build's container pool.
    pub fn spare_containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `tmp/`: work in progress, on the store's file system.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `quarantine/<name>`: a corrupted object, blob or record moved aside (`name`: its
    /// file name).
    pub fn quarantine(&self, name: &str) -> PathBuf {
        self.root.join("quarantine").join(name)
    }
}
