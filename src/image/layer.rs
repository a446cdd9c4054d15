//! Layers made here: an artifact's tar mapped onto the image's Debian layout (when the
//! store has no layer for it, or it folds into the overflow layer), the runtime and package
//! layers; each written with the layer module's normaliser and gzip framing. Reading an
//! artifact also yields what each of its ELF files needs at run time (for the linkage
//! check), so a stored layer's artifact is read once, keeping no file contents.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ArtifactLayer, Error, RuntimeFile};
use crate::digest::Sha256;
use crate::layer::{GzipLayer, Layout, NormalTar, elf, normal_mode, relative_path};
use crate::recipe::Platform;

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

/// Where a layer blob's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum BlobBytes {
    /// Made here.
    Memory(Vec<u8>),
    /// The store's blob file, checked against its digest when it is copied.
    File(PathBuf),
}

/// A layer after compression.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    /// The gzip bytes.
    pub bytes: BlobBytes,
    /// sha256 of the gzip bytes: the layer's digest.
    pub digest: Sha256,
    /// sha256 of the uncompressed tar: the layer's diff_id.
    pub diff_id: Sha256,
    /// Size of the gzip bytes.
    pub size: u64,
}

/// What an ELF file of an artifact asks of the dynamic linker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfNeeds {
    /// Its image path.
    pub path: String,
    /// `DT_NEEDED` libraries.
    pub libraries: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` entries, as written (`$ORIGIN` unexpanded).
    pub runpaths: Vec<String>,
}

impl ElfNeeds {
    fn of(path: &str, bytes: &[u8]) -> Option<Self> {
        if !bytes.starts_with(b"\x7fELF") {
            return None;
        }
        let elf = goblin::elf::Elf::parse(bytes).ok()?;
        Some(Self {
            path: path.to_owned(),
            libraries: elf.libraries.iter().map(|l| (*l).to_owned()).collect(),
            runpaths: elf
                .runpaths
                .iter()
                .chain(elf.rpaths.iter())
                .map(|r| (*r).to_owned())
                .collect(),
        })
    }
}

/// Whether reading an artifact keeps its files' contents (to write its layer here) or only
/// its paths (its layer is the store's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Contents too.
    Contents,
    /// Paths, modes and link targets only.
    Paths,
}

impl Blob {
    /// The bytes of a blob made here.
    #[cfg(test)]
    pub fn memory(&self) -> &[u8] {
        match &self.bytes {
            BlobBytes::Memory(bytes) => bytes,
            BlobBytes::File(path) => panic!("blob {} is a file", path.display()),
        }
    }
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

    /// What each ELF file of the layer asks of the dynamic linker.
    pub fn elf_needs(&self) -> Vec<ElfNeeds> {
        self.entries
            .iter()
            .filter_map(|(path, entry)| match entry {
                Entry::File(bytes, _) => ElfNeeds::of(path, bytes),
                _ => None,
            })
            .collect()
    }

    /// Whether the layer has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    /// Reads an artifact's object and maps it onto `layout`, checking
    /// every ELF file's machine against `platform` and reading what it needs at run time.
    /// Directories, files (0755 if any execute bit, else 0644) and symlinks are kept; hard
    /// links become copies of their target. With [`Keep::Paths`], files keep no content.
    pub fn from_artifact(
        artifact: &ArtifactLayer,
        platform: Platform,
        layout: Layout,
        keep: Keep,
    ) -> Result<(Self, Vec<ElfNeeds>), Error> {
        let name = artifact.name.as_str();
        let io = |source| Error::ArtifactTar {
            artifact: name.to_owned(),
            source,
        };
        let map = |path: &Path| -> Result<Option<String>, Error> {
            let text = path.to_string_lossy();
            let outside = || crate::layer::Error::ArtifactPath {
                artifact: name.to_owned(),
                path: text.clone().into_owned(),
            };
            let relative = relative_path(path).ok_or_else(outside)?;
            layout.place(&relative).map_err(|_| outside().into())
        };
        let mut layer = Self::default();
        let mut needs: Vec<ElfNeeds> = Vec::new();
        let object = crate::store::read_object(&artifact.object).map_err(|e| io(e.source))?;
        let mut archive = tar::Archive::new(object);
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
                    if let Some(found) = needs.iter().find(|n| n.path == source) {
                        needs.push(ElfNeeds {
                            path: target.clone(),
                            ..found.clone()
                        });
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mode = entry.header().mode().map_err(io)?;
                    // The header first: a file that is not ELF is read only to be kept.
                    let mut data = Vec::new();
                    (&mut entry)
                        .take(elf::HEADER_LEN as u64)
                        .read_to_end(&mut data)
                        .map_err(io)?;
                    let machine = elf::machine(&data);
                    if let Some(found) = machine
                        && found != platform.elf_machine()
                    {
                        return Err(crate::layer::Error::WrongMachine {
                            artifact: name.to_owned(),
                            file: shown(),
                            platform,
                            found,
                        }
                        .into());
                    }
                    if machine.is_some() || keep == Keep::Contents {
                        entry.read_to_end(&mut data).map_err(io)?;
                        needs.extend(ElfNeeds::of(&target, &data));
                    }
                    if keep == Keep::Paths {
                        data = Vec::new();
                    }
                    layer.insert(&target, Entry::File(data, normal_mode(mode)));
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
        Ok((layer, needs))
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

    /// Writes the layer tar with every entry's mtime at `mtime`, gzipped.
    pub fn seal(&self, mtime: i64) -> io::Result<Blob> {
        let mut tar = NormalTar::new(GzipLayer::new(Vec::new()), mtime);
        for (path, entry) in &self.entries {
            match entry {
                Entry::Dir => tar.dir(path)?,
                Entry::File(data, mode) => tar.file(path, *mode, data.len() as u64, &data[..])?,
                Entry::Symlink(target) => tar.symlink(path, target)?,
            }
        }
        let (mut bytes, digests) = tar.finish()?.finish()?;
        bytes.shrink_to_fit();
        Ok(Blob {
            bytes: BlobBytes::Memory(bytes),
            digest: digests.digest,
            diff_id: digests.diff_id,
            size: digests.size,
        })
    }
}

/// Reads a gzip layer back: the headers of its entries, in order.
#[cfg(test)]
pub(crate) fn list(gzip: &[u8]) -> Vec<crate::layer::tests::Header> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gzip)
        .read_to_end(&mut tar)
        .unwrap();
    crate::layer::tests::headers(&tar)
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
    use crate::image::testing::{artifact, artifact_from_tar};
    use crate::layer::elf::tests::header as elf_header;

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
        let (layer, _) =
            LayerContent::from_artifact(&tar, Platform::Amd64, Layout::Debian(18), Keep::Contents)
                .unwrap();
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
        let error =
            LayerContent::from_artifact(&tar, Platform::Arm64, Layout::Debian(18), Keep::Contents)
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "x86-64 file lib/foo.so in artifact `foo` cannot go into a linux/arm64 image (it needs aarch64)"
        );
        let tar = artifact("foo", &[("lib/foo.so", &elf_header(183, false), 0o755)]);
        assert!(
            LayerContent::from_artifact(&tar, Platform::Arm64, Layout::Debian(18), Keep::Contents)
                .is_ok()
        );
    }

    #[test]
    fn paths_outside_the_artifact_layout_are_refused() {
        for bad in ["etc/passwd", "README", "../lib/x.so"] {
            let tar = artifact("bar", &[(bad, b"x", 0o644)]);
            let error = LayerContent::from_artifact(
                &tar,
                Platform::Amd64,
                Layout::Debian(18),
                Keep::Contents,
            );
            match error {
                Err(e @ Error::Artifact(crate::layer::Error::ArtifactPath { .. })) => {
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
        let tar = artifact_from_tar("l", &builder.into_inner().unwrap());
        let (layer, _) =
            LayerContent::from_artifact(&tar, Platform::Amd64, Layout::Debian(18), Keep::Contents)
                .unwrap();
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
            layer.seal(1_700_000_000).unwrap(),
            layer.seal(1_700_000_000).unwrap(),
        );
        assert_eq!(one.memory(), two.memory());
        assert_eq!(Sha256::of(one.memory()), one.digest);
        // gzip header: magic, CM, FLG (no FNAME), MTIME = 0, XFL, OS = 255 (unknown).
        assert_eq!(&one.memory()[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(one.memory()[3] & 0x08, 0, "no file name");
        assert_eq!(&one.memory()[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
        assert_eq!(one.memory()[9], 255);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(one.memory())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Sha256::of(&tar), one.diff_id);
        let t = 1_700_000_000;
        let (d, r, l) = (b'5', b'0', b'2');
        assert_eq!(
            list(one.memory()),
            [
                ("etc/".to_owned(), t, 0o755, 0, 0, d, None),
                ("etc/alink".into(), t, 0o777, 0, 0, l, None),
                ("etc/postgresql/".into(), t, 0o755, 0, 0, d, None),
                ("etc/postgresql/a".into(), t, 0o755, 0, 0, r, None),
                ("etc/postgresql/b".into(), t, 0o600, 0, 0, r, None),
            ]
        );
        assert_ne!(layer.seal(1).unwrap().digest, one.digest);
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
}
