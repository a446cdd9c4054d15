//! Reading an artifact directory: every entry with its path relative to the directory,
//! depth first in file-name order, holding paths and sizes, never contents.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Error, NormalTar, normal_mode};
use crate::fs::{FsError, err, sorted_entries};

/// One entry of a directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file on disk, its normalised mode and size.
    File {
        /// Where its content is.
        source: PathBuf,
        /// 0755 or 0644.
        mode: u32,
        /// Its size.
        size: u64,
    },
    /// A symbolic link to this target.
    Symlink(String),
}

impl Node {
    /// Writes this entry at `path`, reading a file's content from disk.
    pub fn append<W: io::Write>(&self, tar: &mut NormalTar<W>, path: &str) -> io::Result<()> {
        match self {
            Node::Dir => tar.dir(path),
            Node::File { source, mode, size } => {
                let file = err::File::open(source)?;
                // A file that changed size since it was read would corrupt the tar.
                let read = io::Read::take(file, *size);
                tar.file(path, *mode, *size, read)
            }
            Node::Symlink(target) => tar.symlink(path, target),
        }
    }
}

/// Every entry under `dir`, `/`-joined relative paths, depth first in file-name order.
/// Devices, sockets and fifos are an error.
pub fn walk(dir: &Path) -> Result<Vec<(String, Node)>, Error> {
    let mut out = Vec::new();
    visit(dir, "", &mut out)?;
    Ok(out)
}

fn visit(dir: &Path, prefix: &str, out: &mut Vec<(String, Node)>) -> Result<(), Error> {
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let meta = err::symlink_metadata(&path).map_err(|e| FsError::new("stat", &path, e))?;
        if meta.file_type().is_symlink() {
            let target = err::read_link(&path).map_err(|e| FsError::new("read link", &path, e))?;
            out.push((name, Node::Symlink(target.to_string_lossy().into_owned())));
        } else if meta.is_dir() {
            out.push((name.clone(), Node::Dir));
            visit(&path, &format!("{name}/"), out)?;
        } else if meta.is_file() {
            let node = Node::File {
                mode: normal_mode(meta.permissions().mode()),
                size: meta.len(),
                source: path,
            };
            out.push((name, node));
        } else {
            return Err(Error::SpecialFile { path });
        }
    }
    Ok(())
}
