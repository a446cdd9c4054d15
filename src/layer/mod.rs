//! Deterministic tars: the one normaliser that writes store objects and image layers alike
//! (entries in a fixed order, GNU headers, one mtime, uid/gid 0 with no names, modes
//! normalised, no extended attributes), the map from an artifact's prefix-relative paths to
//! the image's Debian layout, the gzip framing of layers with their digests, and the ELF
//! header check that keeps a file of one machine out of another's image.
//!
//! Owns the bytes of a tar and of a gzip layer. Never decides where they are stored (store)
//! or which layers an image has (image); knows nothing of derivations.
//!
//! Choices:
//! - Artifact paths map onto the Debian layout (`N` = `pg_major`): `lib/` and `bin/` to
//!   `/usr/lib/postgresql/N/{lib,bin}/`, `share/` to `/usr/share/postgresql/N/`,
//!   `licenses/<name>/` to `/usr/share/doc/azb/<name>/`; `include/` stays out of images
//!   (dependent builds get it from the object), anything else is an error. An extension
//!   image ([`Layout::Root`]) keeps the artifact's own paths at its root instead.
//! - gzip: no file name, mtime 0, OS "unknown", level [`GZIP_LEVEL`]; the same tar always
//!   gives the same blob.

pub mod elf;
mod gzip;
mod map;
mod tar;
mod walk;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::fs::FsError;
use crate::recipe::Platform;

pub use gzip::{GZIP_LEVEL, GzipLayer, LayerDigests};
pub use map::{Layout, OutsideLayout, image_path, relative_path};
pub use tar::{NormalTar, normal_mode};
pub use walk::{Node, walk};

/// What can go wrong reading an artifact directory or writing its layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// An artifact holds something other than files, directories and symlinks.
    #[error("artifact directory `{path}` holds a special file (device, socket or fifo)")]
    SpecialFile {
        /// The file.
        path: PathBuf,
    },
    /// An artifact path has no place in the image layout.
    #[error(
        "artifact `{artifact}` holds `{path}`, outside lib/, bin/, share/, include/ and licenses/"
    )]
    ArtifactPath {
        /// The artifact's recipe.
        artifact: String,
        /// The path inside it.
        path: String,
    },
    /// An ELF file of another machine.
    #[error(
        "{} file {file} in artifact `{artifact}` cannot go into a {platform} image (it needs {})",
        elf::machine_name(*found),
        elf::machine_name(platform.elf_machine())
    )]
    WrongMachine {
        /// The artifact's recipe.
        artifact: String,
        /// The file inside it.
        file: String,
        /// The image's platform.
        platform: Platform,
        /// The file's `e_machine`.
        found: u16,
    },
}

/// Writes the image layer of the artifact directory `dir` (prefix-relative paths) to `out`
/// as gzip: paths mapped onto the Debian layout, every parent directory present, every ELF
/// file checked against `platform`, every entry's mtime at `mtime`. Streams file by file:
/// only the paths are held in memory.
pub fn artifact_layer<W: Write>(
    artifact: &str,
    dir: &Path,
    platform: Platform,
    pg_major: u32,
    mtime: i64,
    out: W,
) -> Result<(W, LayerDigests), Error> {
    let mut entries = std::collections::BTreeMap::new();
    for (path, node) in walk(dir)? {
        let outside = || Error::ArtifactPath {
            artifact: artifact.to_owned(),
            path: path.clone(),
        };
        let Some(target) = image_path(&path, pg_major).map_err(|_| outside())? else {
            continue;
        };
        if let Node::File { source, .. } = &node
            && let Some(found) = elf_machine_of(source)?
            && found != platform.elf_machine()
        {
            return Err(Error::WrongMachine {
                artifact: artifact.to_owned(),
                file: path.clone(),
                platform,
                found,
            });
        }
        let mut end = 0;
        while let Some(slash) = target[end..].find('/') {
            end += slash;
            entries.entry(target[..end].to_owned()).or_insert(Node::Dir);
            end += 1;
        }
        entries.insert(target, node);
    }
    let io = |e| FsError::new("write the layer of", dir, e);
    let mut tar = NormalTar::new(GzipLayer::new(out), mtime);
    for (path, node) in &entries {
        node.append(&mut tar, path).map_err(io)?;
    }
    let (out, digests) = tar.finish().and_then(GzipLayer::finish).map_err(io)?;
    Ok((out, digests))
}

/// The `e_machine` of the file at `path`, if it is an ELF file.
pub fn elf_machine_of(path: &Path) -> Result<Option<u16>, FsError> {
    let mut file = crate::fs::err::File::open(path).map_err(|e| FsError::new("open", path, e))?;
    let mut header = [0u8; elf::HEADER_LEN];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FsError::new("read", path, e)),
        }
    }
    Ok(elf::machine(&header[..read]))
}

#[cfg(test)]
pub(crate) mod tests;
