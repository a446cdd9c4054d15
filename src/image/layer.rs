//! Deterministic layers: entries sorted by path with every parent directory present,
//! mtime fixed to the image's creation time, uid/gid 0 and no names, modes normalized
//! (directories and executables 0755, other files 0644, or the mode a runtime file
//! asks for), no extended attributes; gzip with no name, mtime 0 and a fixed level.
//! An artifact's prefix-relative paths are mapped onto the Debian layout of the base.

use std::collections::BTreeMap;
use std::io::Read;

use flate2::{Compression, GzBuilder};

use super::Error;
use crate::build::elf_machine;
use crate::digest::{HashingWriter, Sha256};
use crate::recipe::Platform;
use crate::runtime::RuntimeFile;

/// gzip level of every layer: fixed, so the same tar gives the same blob.
const GZIP_LEVEL: u32 = 6;

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A regular file with its mode.
    File(Vec<u8>, u32),
    /// A symbolic link to a target.
    Symlink(String),
}

/// The entries of one layer, by path (relative, no leading `/`).
#[derive(Debug, Default, Clone)]
pub struct LayerContent {
    entries: BTreeMap<String, Entry>,
}

impl LayerContent {
    /// Adds an entry and its parent directories.
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        self.entries.insert(path.to_owned(), entry);
    }

    /// Adds every entry of `other`.
    pub fn extend(&mut self, other: LayerContent) {
        for (path, entry) in other.entries {
            self.entries.insert(path, entry);
        }
    }

    /// Bytes of file content (for choosing which layers fold into the overflow layer).
    pub fn size(&self) -> u64 {
        self.entries
            .values()
            .map(|e| {
                if let Entry::File(data, _) = e {
                    data.len() as u64
                } else {
                    0
                }
            })
            .sum()
    }

    /// The layer's files for a runtime layer.
    pub fn from_runtime(files: &[RuntimeFile]) -> Self {
        let mut layer = Self::default();
        for file in files {
            layer.insert(
                &file.path,
                Entry::File(file.contents.clone(), file.mode & 0o7777),
            );
        }
        layer
    }

    /// Maps an artifact tar (paths relative to the PostgreSQL prefix) onto the image's
    /// Debian layout, checking every ELF file's machine against `platform`.
    pub fn from_artifact(
        name: &str,
        tar: &[u8],
        platform: Platform,
        pg_major: u32,
    ) -> Result<Self, Error> {
        let io = |source| Error::ArtifactTar {
            artifact: name.to_owned(),
            source,
        };
        let mut layer = Self::default();
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let path = entry
                .path()
                .map_err(io)?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            let Some(target) = map_path(&path, pg_major) else {
                if path == "include" || path.starts_with("include/") {
                    continue;
                }
                return Err(Error::ArtifactPath {
                    artifact: name.to_owned(),
                    path,
                });
            };
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                layer.insert(&target, Entry::Dir);
            } else if kind.is_symlink() {
                let link = entry
                    .link_name()
                    .map_err(io)?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                layer.insert(&target, Entry::Symlink(link));
            } else if kind.is_file() {
                let mode = entry.header().mode().map_err(io)?;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data).map_err(io)?;
                if let Some(found) = elf_machine(&data[..data.len().min(20)])
                    && found != platform.elf_machine()
                {
                    return Err(Error::WrongMachine {
                        artifact: name.to_owned(),
                        file: path,
                        platform,
                        found,
                        expected: platform.elf_machine(),
                    });
                }
                layer.insert(
                    &target,
                    Entry::File(data, if mode & 0o111 != 0 { 0o755 } else { 0o644 }),
                );
            }
        }
        Ok(layer)
    }

    /// Writes the tar and its gzip blob.
    pub fn seal(&self, mtime: i64) -> Result<Blob, std::io::Error> {
        // tar -> (hash: diff_id) -> gzip -> (hash: blob digest) -> bytes
        let gzip = GzBuilder::new()
            .mtime(0)
            .write(HashingWriter::new(Vec::new()), Compression::new(GZIP_LEVEL));
        let mut diff = HashingWriter::new(gzip);
        {
            let mut builder = tar::Builder::new(&mut diff);
            for (path, entry) in &self.entries {
                let mut header = tar::Header::new_gnu();
                header.set_mtime(mtime.max(0) as u64);
                header.set_uid(0);
                header.set_gid(0);
                match entry {
                    Entry::Dir => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_mode(0o755);
                        header.set_size(0);
                        builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                    }
                    Entry::File(data, mode) => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_mode(*mode);
                        header.set_size(data.len() as u64);
                        builder.append_data(&mut header, path, &data[..])?;
                    }
                    Entry::Symlink(target) => {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_mode(0o777);
                        header.set_size(0);
                        builder.append_link(&mut header, path, target)?;
                    }
                }
            }
            builder.finish()?;
        }
        let (gzip, tar_digests) = diff.finish();
        let (bytes, blob_digests) = gzip.finish()?.finish();
        Ok(Blob {
            bytes,
            digest: blob_digests.sha256,
            diff_id: tar_digests.sha256,
        })
    }
}

/// Where an artifact path goes in the image; None for paths outside the layout.
fn map_path(path: &str, pg_major: u32) -> Option<String> {
    let (top, rest) = path.split_once('/').unwrap_or((path, ""));
    let join = |base: String| {
        if rest.is_empty() {
            base
        } else {
            format!("{base}/{rest}")
        }
    };
    match top {
        "lib" => Some(join(format!("usr/lib/postgresql/{pg_major}/lib"))),
        "bin" => Some(join(format!("usr/lib/postgresql/{pg_major}/bin"))),
        "share" => Some(join(format!("usr/share/postgresql/{pg_major}"))),
        "licenses" => Some(join("usr/share/doc/azb".to_owned())),
        _ => None,
    }
}

/// A compressed layer.
#[derive(Debug, Clone)]
pub struct Blob {
    /// gzip bytes.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`.
    pub digest: Sha256,
    /// sha256 of the uncompressed tar.
    pub diff_id: Sha256,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn elf(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn artifact_paths_map_to_debian_layout_and_headers_stay_out() {
        let so = elf(62);
        let tar = artifact(&[
            ("lib/x.so", &so),
            ("share/extension/x.control", b"c"),
            ("include/server/x.h", b"h"),
            ("licenses/x/LICENSE", b"l"),
        ]);
        let layer = LayerContent::from_artifact("x", &tar, Platform::Amd64, 18).unwrap();
        let paths: Vec<&str> = layer.entries.keys().map(String::as_str).collect();
        assert!(paths.contains(&"usr/lib/postgresql/18/lib/x.so"));
        assert!(paths.contains(&"usr/share/postgresql/18/extension/x.control"));
        assert!(paths.contains(&"usr/share/doc/azb/x/LICENSE"));
        assert!(
            paths.contains(&"usr/lib/postgresql/18"),
            "parents are present"
        );
        assert!(!paths.iter().any(|p| p.contains("include")));
    }

    #[test]
    fn wrong_machine_and_stray_paths_are_refused() {
        let tar = artifact(&[("lib/x.so", &elf(62))]);
        let e = LayerContent::from_artifact("x", &tar, Platform::Arm64, 18).unwrap_err();
        assert!(
            e.to_string()
                .contains("machine 62, which cannot go into a linux/arm64 image"),
            "{e}"
        );
        let tar = artifact(&[("etc/passwd", b"x")]);
        assert!(matches!(
            LayerContent::from_artifact("x", &tar, Platform::Amd64, 18),
            Err(Error::ArtifactPath { .. })
        ));
    }

    #[test]
    fn sealing_is_deterministic_sorted_and_timestamped() {
        let mut a = LayerContent::default();
        a.insert("/etc/b", Entry::File(b"2".to_vec(), 0o600));
        a.insert("/etc/a", Entry::File(b"1".to_vec(), 0o644));
        let (one, two) = (
            a.seal(1_700_000_000).unwrap(),
            a.seal(1_700_000_000).unwrap(),
        );
        assert_eq!(one.digest, two.digest);
        assert_eq!(&one.bytes[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&one.bytes[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Sha256::of(&tar), one.diff_id);
        assert_eq!(Sha256::of(&one.bytes), one.digest);
        let entries: Vec<(String, u64, u32)> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mtime().unwrap(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("etc/".to_owned(), 1_700_000_000, 0o755),
                ("etc/a".into(), 1_700_000_000, 0o644),
                ("etc/b".into(), 1_700_000_000, 0o600)
            ]
        );
        assert_ne!(a.seal(1).unwrap().digest, one.digest);
    }
}
