//! Errors of the store.

use std::path::PathBuf;

use crate::digest::ObjectHash;
use crate::drv::DrvHash;
use crate::fs::FsError;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The store was written by an incompatible azb.
    #[error("the store at `{root}` has layout version {found}, this azb uses {expected}")]
    Version {
        /// Store root.
        root: PathBuf,
        /// Version found on disk.
        found: String,
        /// Version this azb writes.
        expected: u32,
    },
    /// A realisation file could not be read as JSON.
    #[error("realisation `{path}` is not valid")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Packing an artifact directory into a tar failed.
    #[error("cannot pack artifact directory `{dir}` for derivation {drv}")]
    Pack {
        /// The directory.
        dir: PathBuf,
        /// The derivation.
        drv: DrvHash,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An artifact holds something other than files, directories and symlinks.
    #[error("artifact directory `{path}` holds a special file (device, socket or fifo)")]
    SpecialFile {
        /// The file.
        path: PathBuf,
    },
    /// An object could not be decompressed.
    #[error("object {object} at `{path}` cannot be decompressed")]
    Decompress {
        /// The object.
        object: ObjectHash,
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
