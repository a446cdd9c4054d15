//! The normalised tar writer: GNU headers with only the entry's own facts (path, type,
//! mode, size, link target) and one mtime; uid and gid 0 with no user or group names; no
//! extended attributes; directories written as `path/`. The caller decides the order.

use std::io::{self, Read, Write};

/// Permission bits of an artifact file: 0755 when any execute bit is set, else 0644.
pub fn normal_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// A tar being written with normalised headers.
pub struct NormalTar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> NormalTar<W> {
    /// Starts a tar into `out`, every entry's mtime at `mtime` (negative counts as 0).
    pub fn new(out: W, mtime: i64) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        // Docker's tar reader, among others, knows no GNU sparse entries.
        builder.sparse(false);
        Self {
            builder,
            mtime: mtime.max(0) as u64,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    /// A directory (mode 0755).
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Directory, 0o755, 0);
        let path = format!("{}/", path.trim_end_matches('/'));
        self.builder.append_data(&mut header, path, io::empty())
    }

    /// A regular file of `size` bytes read from `data`, with permission bits `mode`.
    pub fn file(&mut self, path: &str, mode: u32, size: u64, data: impl Read) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Regular, mode & 0o7777, size);
        self.builder.append_data(&mut header, path, data)
    }

    /// A symbolic link to `target`, kept as written.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target)
    }

    /// Ends the tar and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.builder.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}
