//! Packing an artifact directory into the store's normalized tar: entries sorted by path,
//! mtime 0, uid/gid 0, no user or group names, modes 0755 (directories and executables) or
//! 0644, symlinks kept, nothing else allowed.

use std::io::{self, Write};
use std::path::Path;

use super::Error;
use crate::fs::{FsError, err, sorted_entries};

/// Writes the normalized tar of everything under `dir` to `out`.
pub(super) fn pack_dir(dir: &Path, out: impl Write) -> Result<(), Error> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    add_children(&mut builder, dir, "")?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| FsError::new("finish tar of", dir, e))?;
    Ok(())
}

fn add_children<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
) -> Result<(), Error> {
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let meta = err::symlink_metadata(&path).map_err(|e| FsError::new("stat", &path, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let append =
            |builder: &mut tar::Builder<W>, header: &mut tar::Header, data: &mut dyn io::Read| {
                builder
                    .append_data(header, &name, data)
                    .map_err(|e| FsError::new("add to tar", &path, e))
            };
        if meta.file_type().is_symlink() {
            let target = err::read_link(&path).map_err(|e| FsError::new("read link", &path, e))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder
                .append_link(&mut header, &name, &target)
                .map_err(|e| FsError::new("add to tar", &path, e))?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            append(builder, &mut header, &mut io::empty())?;
            add_children(builder, &path, &format!("{name}/"))?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let mut file = err::File::open(&path).map_err(|e| FsError::new("open", &path, e))?;
            append(builder, &mut header, &mut file)?;
        } else {
            return Err(Error::SpecialFile { path });
        }
    }
    Ok(())
}
