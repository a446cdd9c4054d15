//! Deterministic layers. An artifact's prefix-relative paths are mapped onto the base's
//! Debian layout, every ELF file's machine is checked, and the entries are written as a tar
//! that depends only on content: sorted by path, every parent directory present, GNU
//! headers, mtime fixed, uid/gid 0 with empty names, modes normalized, no extended
//! attributes. The tar is gzipped with no file name, mtime 0, OS "unknown" and a fixed
//! level, hashed on the way (diff_id before gzip, digest after); a [`LayerCache`] keeps
//! compressed layers so the same tar is compressed once.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::{Compression, GzBuilder};

use super::{ArtifactLayer, Error, RuntimeFile};
use crate::build::{ELF_HEADER_LEN, elf_machine};
use crate::digest::{HashingWriter, Sha256};
use crate::fs::{FsError, err, write_atomic};
use crate::recipe::Platform;

/// gzip level of every layer: fixed, so the same tar always gives the same blob.
const GZIP_LEVEL: u32 = 6;

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A directory (mode 0755).
    Dir,
    /// A regular file with its content and permission bits.
    File(Vec<u8>, u32),
    /// A symbolic link to its target, kept as written.
    Symlink(String),
}

/// The entries of one layer by path (relative to `/`, no leading or trailing slash).
#[derive(Debug, Default, Clone)]
pub(crate) struct LayerContent {
    entries: BTreeMap<String, Entry>,
}

/// A layer after compression.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    /// The gzip bytes.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`: the layer's digest.
    pub digest: Sha256,
    /// sha256 of the uncompressed tar: the layer's diff_id.
    pub diff_id: Sha256,
}

impl LayerContent {
    /// Adds an entry, and a directory entry for each of its parents not yet present.
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash;
            self.entries
                .entry(path[..end].to_owned())
                .or_insert(Entry::Dir);
            end += 1;
        }
        self.entries.insert(path.to_owned(), entry);
    }

    /// Adds every entry of `other`; on the same path, `other` wins (as a later layer would).
    pub fn extend(&mut self, other: LayerContent) {
        self.entries.extend(other.entries);
    }

    /// The paths of the layer, sorted.
    #[cfg(test)]
    pub fn paths(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Maps an artifact tar onto the image's Debian layout, checking every ELF file's
    /// machine against `platform`. Directories, files (0755 if any execute bit, else 0644)
    /// and symlinks are kept; hard links become copies of their target.
    pub fn from_artifact(
        artifact: &ArtifactLayer,
        platform: Platform,
        pg_major: u32,
    ) -> Result<Self, Error> {
        let name = artifact.name.as_str();
        let io = |source| Error::ArtifactTar {
            artifact: name.to_owned(),
            source,
        };
        let map = |path: &Path| -> Result<Option<String>, Error> {
            let text = path.to_string_lossy();
            let outside = || Error::ArtifactPath {
                artifact: name.to_owned(),
                path: text.clone().into_owned(),
            };
            let relative = relative_path(path).ok_or_else(outside)?;
            map_path(&relative, pg_major).map_err(|()| outside())
        };
        let mut layer = Self::default();
        let mut archive = tar::Archive::new(&artifact.tar[..]);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let path = entry.path().map_err(io)?.into_owned();
            let Some(target) = map(&path)? else { continue };
            let kind = entry.header().entry_type();
            let shown = || path.to_string_lossy().into_owned();
            match kind {
                tar::EntryType::Directory => layer.insert(&target, Entry::Dir),
                tar::EntryType::Symlink => {
                    let link = entry.link_name().map_err(io)?.unwrap_or_default();
                    layer.insert(&target, Entry::Symlink(link.to_string_lossy().into_owned()));
                }
                tar::EntryType::Link => {
                    let link = entry.link_name().map_err(io)?.unwrap_or_default();
                    let missing = || Error::ArtifactLink {
                        artifact: name.to_owned(),
                        path: shown(),
                        target: link.to_string_lossy().into_owned(),
                    };
                    let source = map(&link)?.ok_or_else(missing)?;
                    match layer.entries.get(&source) {
                        Some(file @ Entry::File(..)) => layer.insert(&target, file.clone()),
                        _ => return Err(missing()),
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mode = entry.header().mode().map_err(io)?;
                    let mut data = Vec::with_capacity(entry.size() as usize);
                    entry.read_to_end(&mut data).map_err(io)?;
                    if let Some(found) = elf_machine(&data[..data.len().min(ELF_HEADER_LEN)])
                        && found != platform.elf_machine()
                    {
                        return Err(Error::WrongMachine {
                            artifact: name.to_owned(),
                            file: shown(),
                            platform,
                            found,
                        });
                    }
                    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    layer.insert(&target, Entry::File(data, mode));
                }
                tar::EntryType::XGlobalHeader => {}
                other => {
                    return Err(Error::ArtifactEntryType {
                        artifact: name.to_owned(),
                        path: shown(),
                        kind: other.as_byte(),
                    });
                }
            }
        }
        Ok(layer)
    }

    /// Every entry, by path.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// The runtime layer: each file at its absolute path with its own permission bits.
    pub fn from_runtime(files: &[RuntimeFile]) -> Result<Self, Error> {
        let mut layer = Self::default();
        for file in files {
            let bad = || Error::RuntimePath {
                path: file.path.clone(),
            };
            let path = file.path.strip_prefix('/').ok_or_else(bad)?;
            let relative = relative_path(Path::new(path)).filter(|r| r == path);
            let relative = relative.filter(|r| !r.is_empty()).ok_or_else(bad)?;
            layer.insert(
                &relative,
                Entry::File(file.contents.clone(), file.mode & 0o7777),
            );
        }
        Ok(layer)
    }

    /// Writes the layer tar with every entry's mtime at `mtime` and gzips it; with a
    /// cache, a tar compressed before is not compressed again.
    pub fn seal(&self, mtime: i64, cache: Option<&LayerCache>) -> io::Result<Blob> {
        let tar = self.tar(mtime)?;
        let diff_id = Sha256::of(&tar);
        if let Some(blob) = cache.and_then(|c| c.get(&diff_id)) {
            return Ok(blob);
        }
        let mut gzip = GzBuilder::new()
            .mtime(0)
            .write(HashingWriter::new(Vec::new()), Compression::new(GZIP_LEVEL));
        gzip.write_all(&tar)?;
        let (mut bytes, blob_digests) = gzip.finish()?.finish();
        bytes.shrink_to_fit();
        let blob = Blob {
            bytes,
            digest: blob_digests.sha256,
            diff_id,
        };
        if let Some(cache) = cache {
            cache.put(&blob);
        }
        Ok(blob)
    }

    /// The uncompressed layer tar, every entry's mtime at `mtime`.
    fn tar(&self, mtime: i64) -> io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let mtime = mtime.max(0) as u64;
        for (path, entry) in &self.entries {
            match entry {
                Entry::Dir => {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
                    tar.append_data(&mut h, format!("{path}/"), io::empty())?;
                }
                Entry::File(data, mode) => {
                    let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64, mtime);
                    tar.append_data(&mut h, path, &data[..])?;
                }
                Entry::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
                    tar.append_link(&mut h, path, target)?;
                }
            }
        }
        tar.into_inner()
    }
}

/// Compressed layers kept between builds (in the store's `layers/`), named by the sha256
/// of their uncompressed tar: `<diff_id>.json` records the blob's digest, `blobs/<digest>`
/// holds it. Every read is checked against the recorded digest; a bad or missing entry is
/// simply compressed again. Writes are atomic; failures to write only cost speed.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn record(&self, diff_id: &Sha256) -> PathBuf {
        self.dir.join(format!("{diff_id}.json"))
    }

    fn blob(&self, digest: &Sha256) -> PathBuf {
        self.dir.join("blobs").join(digest.to_string())
    }

    fn get(&self, diff_id: &Sha256) -> Option<Blob> {
        let record = err::read(self.record(diff_id)).ok()?;
        let digest: Sha256 = serde_json::from_slice::<CacheRecord>(&record).ok()?.digest;
        let bytes = err::read(self.blob(&digest)).ok()?;
        if Sha256::of(&bytes) != digest {
            tracing::warn!(%diff_id, "cached layer blob does not match its digest; compressing again");
            return None;
        }
        Some(Blob {
            bytes,
            digest,
            diff_id: *diff_id,
        })
    }

    fn put(&self, blob: &Blob) {
        let tmp = self.dir.join("tmp");
        let written = err::create_dir_all(&tmp)
            .map_err(|e| FsError::new("create directory", &tmp, e))
            .and_then(|()| write_atomic(&tmp, &self.blob(&blob.digest), &blob.bytes))
            .and_then(|()| {
                let record = serde_json::to_vec(&CacheRecord {
                    digest: blob.digest,
                })
                .expect("a record serialises");
                write_atomic(&tmp, &self.record(&blob.diff_id), &record)
            });
        if let Err(e) = written {
            tracing::warn!("cannot keep a compressed layer: {e}");
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheRecord {
    digest: Sha256,
}

/// A GNU tar header with everything but the entry's own facts fixed.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// `path` as `/`-joined normal parts (`.` dropped); `None` when it climbs out (`..`) or is
/// absolute.
fn relative_path(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Where an artifact path goes in the image: `Ok(None)` for the prefix itself and for
/// `include/` (never in the image), `Err` for paths outside the artifact layout.
fn map_path(path: &str, pg_major: u32) -> Result<Option<String>, ()> {
    if path.is_empty() {
        return Ok(None);
    }
    let (top, rest) = path.split_once('/').unwrap_or((path, ""));
    let base = match top {
        "lib" => format!("usr/lib/postgresql/{pg_major}/lib"),
        "bin" => format!("usr/lib/postgresql/{pg_major}/bin"),
        "share" => format!("usr/share/postgresql/{pg_major}"),
        "licenses" => "usr/share/doc/azb".to_owned(),
        "include" => return Ok(None),
        _ => return Err(()),
    };
    Ok(Some(if rest.is_empty() {
        base
    } else {
        format!("{base}/{rest}")
    }))
}

/// Reads a gzip layer back: (path, mtime, mode, uid, gid, entry type) per entry, in order.
#[cfg(test)]
pub(crate) fn list(gzip: &[u8]) -> Vec<(String, u64, u32, u64, u64, tar::EntryType)> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gzip)
        .read_to_end(&mut tar)
        .unwrap();
    tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mtime().unwrap(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.entry_type(),
            )
        })
        .collect()
}

/// The entries of a tar as they are (paths as written, `./` and all): directories, files
/// (0755 if any execute bit, else 0644), symlinks, and hard links as copies of the file
/// they name. Other entry types (devices, fifos) are left out.
pub(crate) fn tar_entries(bytes: &[u8]) -> io::Result<Vec<(String, Entry)>> {
    let mut out: Vec<(String, Entry)> = Vec::new();
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    let key = |p: &Path| p.to_string_lossy().trim_start_matches("./").to_owned();
    for entry in tar::Archive::new(bytes).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let shown = path.to_string_lossy().into_owned();
        let item = match entry.header().entry_type() {
            tar::EntryType::Directory => Entry::Dir,
            tar::EntryType::Symlink => Entry::Symlink(
                entry
                    .link_name()?
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            ),
            tar::EntryType::Link => {
                let target = key(&entry.link_name()?.unwrap_or_default());
                match files.get(&target) {
                    Some(&index) => out[index].1.clone(),
                    None => continue,
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mode = entry.header().mode()?;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data)?;
                files.insert(key(&path), out.len());
                Entry::File(data, if mode & 0o111 != 0 { 0o755 } else { 0o644 })
            }
            _ => continue,
        };
        out.push((shown, item));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::elf_test_header as elf_header;
    use crate::image::testing::artifact;

    #[test]
    fn artifact_paths_map_to_the_debian_layout_and_headers_stay_out() {
        let so = elf_header(62, true);
        let tar = artifact(
            "x",
            &[
                ("lib/x.so", &so, 0o775),
                ("./share/extension/x.control", b"c", 0o664),
                ("include/server/x.h", b"h", 0o644),
                ("bin/x_tool", b"#!/bin/sh\n", 0o700),
                ("licenses/x/LICENSE", b"l", 0o600),
            ],
        );
        let layer = LayerContent::from_artifact(&tar, Platform::Amd64, 18).unwrap();
        assert_eq!(
            layer.paths(),
            [
                "usr",
                "usr/lib",
                "usr/lib/postgresql",
                "usr/lib/postgresql/18",
                "usr/lib/postgresql/18/bin",
                "usr/lib/postgresql/18/bin/x_tool",
                "usr/lib/postgresql/18/lib",
                "usr/lib/postgresql/18/lib/x.so",
                "usr/share",
                "usr/share/doc",
                "usr/share/doc/azb",
                "usr/share/doc/azb/x",
                "usr/share/doc/azb/x/LICENSE",
                "usr/share/postgresql",
                "usr/share/postgresql/18",
                "usr/share/postgresql/18/extension",
                "usr/share/postgresql/18/extension/x.control",
            ]
        );
        let mode = |p: &str| match &layer.entries[p] {
            Entry::File(_, mode) => *mode,
            other => panic!("{other:?}"),
        };
        assert_eq!(mode("usr/lib/postgresql/18/lib/x.so"), 0o755);
        assert_eq!(mode("usr/lib/postgresql/18/bin/x_tool"), 0o755);
        assert_eq!(mode("usr/share/doc/azb/x/LICENSE"), 0o644);
    }

    #[test]
    fn an_x86_64_library_is_refused_in_an_arm64_image() {
        let tar = artifact("foo", &[("lib/foo.so", &elf_header(62, true), 0o755)]);
        let error = LayerContent::from_artifact(&tar, Platform::Arm64, 18).unwrap_err();
        assert_eq!(
            error.to_string(),
            "x86-64 file lib/foo.so in artifact `foo` cannot go into a linux/arm64 image (it needs aarch64)"
        );
        let tar = artifact("foo", &[("lib/foo.so", &elf_header(183, false), 0o755)]);
        assert!(LayerContent::from_artifact(&tar, Platform::Arm64, 18).is_ok());
    }

    #[test]
    fn paths_outside_the_artifact_layout_are_refused() {
        for bad in ["etc/passwd", "README", "../lib/x.so"] {
            let tar = artifact("bar", &[(bad, b"x", 0o644)]);
            let error = LayerContent::from_artifact(&tar, Platform::Amd64, 18);
            match error {
                Err(e @ Error::ArtifactPath { .. }) => {
                    assert!(e.to_string().contains("artifact `bar` holds"), "{e}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn hard_links_become_copies_and_symlinks_stay() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        builder
            .append_data(&mut h, "lib/a.so", &b"abc"[..])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        builder.append_link(&mut h, "lib/b.so", "lib/a.so").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        builder.append_link(&mut h, "lib/c.so", "a.so").unwrap();
        let tar = ArtifactLayer {
            name: "l".into(),
            tar: builder.into_inner().unwrap(),
            mtime: 0,
        };
        let layer = LayerContent::from_artifact(&tar, Platform::Amd64, 18).unwrap();
        let lib = "usr/lib/postgresql/18/lib";
        assert_eq!(
            layer.entries[&format!("{lib}/b.so")],
            Entry::File(b"abc".to_vec(), 0o644)
        );
        assert_eq!(
            layer.entries[&format!("{lib}/c.so")],
            Entry::Symlink("a.so".into())
        );
    }

    #[test]
    fn sealed_layers_are_sorted_timestamped_owned_by_root_and_reproducible() {
        let mut layer = LayerContent::default();
        layer.insert("etc/postgresql/b", Entry::File(b"2".to_vec(), 0o600));
        layer.insert("etc/postgresql/a", Entry::File(b"1".to_vec(), 0o755));
        layer.insert("etc/alink", Entry::Symlink("postgresql/a".into()));
        let (one, two) = (
            layer.seal(1_700_000_000, None).unwrap(),
            layer.seal(1_700_000_000, None).unwrap(),
        );
        assert_eq!(one.bytes, two.bytes);
        assert_eq!(Sha256::of(&one.bytes), one.digest);
        // gzip header: magic, CM, FLG (no FNAME), MTIME = 0, XFL, OS = 255 (unknown).
        assert_eq!(&one.bytes[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(one.bytes[3] & 0x08, 0, "no file name");
        assert_eq!(&one.bytes[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
        assert_eq!(one.bytes[9], 255);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&one.bytes[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Sha256::of(&tar), one.diff_id);
        let t = 1_700_000_000;
        use tar::EntryType::{Directory as D, Regular as R, Symlink as S};
        assert_eq!(
            list(&one.bytes),
            [
                ("etc/".to_owned(), t, 0o755, 0, 0, D),
                ("etc/alink".into(), t, 0o777, 0, 0, S),
                ("etc/postgresql/".into(), t, 0o755, 0, 0, D),
                ("etc/postgresql/a".into(), t, 0o755, 0, 0, R),
                ("etc/postgresql/b".into(), t, 0o600, 0, 0, R),
            ]
        );
        assert_ne!(layer.seal(1, None).unwrap().digest, one.digest);
    }

    #[test]
    fn runtime_paths_must_be_plain_and_absolute() {
        let file = |path: &str| RuntimeFile {
            path: path.into(),
            contents: b"x".to_vec(),
            mode: 0o100640,
        };
        let layer = LayerContent::from_runtime(&[file("/etc/postgresql/x.json")]).unwrap();
        assert_eq!(
            layer.paths(),
            ["etc", "etc/postgresql", "etc/postgresql/x.json"]
        );
        assert_eq!(
            layer.entries["etc/postgresql/x.json"],
            Entry::File(b"x".to_vec(), 0o640)
        );
        for bad in ["etc/x", "/etc/../x", "/", "/etc//x", "/etc/./x"] {
            assert!(
                matches!(
                    LayerContent::from_runtime(&[file(bad)]),
                    Err(Error::RuntimePath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_layer_cache_returns_the_same_blob_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(dir.path().to_owned());
        let mut layer = LayerContent::default();
        layer.insert("etc/x", Entry::File(vec![7; 4096], 0o644));
        let fresh = layer.seal(5, Some(&cache)).unwrap();
        let cached = cache
            .get(&fresh.diff_id)
            .expect("kept after the first seal");
        assert_eq!((cached.digest, &cached.bytes), (fresh.digest, &fresh.bytes));
        // A damaged cached blob is never used: the layer is compressed again.
        err::write(cache.blob(&fresh.digest), b"not gzip").unwrap();
        assert!(cache.get(&fresh.diff_id).is_none());
        let again = layer.seal(5, Some(&cache)).unwrap();
        assert_eq!(again.digest, fresh.digest);
        assert_eq!(Sha256::of(&again.bytes), fresh.digest);
    }
}
