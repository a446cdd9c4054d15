//! Packing an artifact directory into the store's normalized tar (the layer module's
//! normaliser, mtime 0): entries depth first in file-name order, modes 0755 (directories
//! and executables) or 0644, symlinks kept, nothing else allowed.

use std::io::Write;
use std::path::Path;

use super::Error;
use crate::fs::FsError;
use crate::layer::{NormalTar, walk};

/// Writes the normalized tar of everything under `dir` to `out`.
pub(super) fn pack_dir<W: Write>(dir: &Path, out: W) -> Result<W, Error> {
    let mut tar = NormalTar::new(out, 0);
    for (path, node) in walk(dir)? {
        node.append(&mut tar, &path)
            .map_err(|e| FsError::new("add to tar", dir.join(&path), e))?;
    }
    Ok(tar
        .finish()
        .map_err(|e| FsError::new("finish tar of", dir, e))?)
}
