//! Errors of the store.

use std::path::PathBuf;

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
    /// Files from elsewhere do not match the record they came with.
    #[error("refused the entry for derivation {drv}: {what}")]
    Mismatch {
        /// The derivation.
        drv: crate::drv::DrvHash,
        /// What did not match.
        what: String,
    },
    /// Reading an artifact directory or making its layer failed.
    #[error(transparent)]
    Layer(#[from] crate::layer::Error),
}
