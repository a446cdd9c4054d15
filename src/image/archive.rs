//! The docker-archive output: one tar holding Docker's `manifest.json` (what `docker load`
//! reads) and the same image as an OCI layout (`oci-layout`, `index.json`, `blobs/`), so
//! tools that read either format take it. Entries are sorted by path and written with
//! the layer rules (GNU headers, fixed mtime, root-owned, 0755/0644).

use std::io;
use std::path::Path;

use oci_spec::image::Descriptor;
use serde::Serialize;

use super::Error;
use super::oci::{BlobSource, Blobs, OCI_LAYOUT, REF_NAME, annotated, canonical_json, index};
use crate::digest::{HashingReader, Sha256};
use crate::fs::{FsError, err};
use crate::layer::NormalTar;

/// The annotation containerd (and Docker's containerd image store) names an image by.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The one image a docker-archive holds.
pub(crate) struct ArchiveImage<'a> {
    /// Repository name, e.g. `azb/postgres`.
    pub name: &'a str,
    /// Tags, the main one first.
    pub tags: &'a [String],
    /// The manifest's descriptor.
    pub manifest: &'a Descriptor,
    /// The config blob.
    pub config: Sha256,
    /// The layer blobs, base first.
    pub layers: &'a [Sha256],
}

/// Docker's `manifest.json` entry.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The path of a blob inside the archive.
fn blob_entry(digest: &Sha256) -> String {
    format!("blobs/sha256/{digest}")
}

/// `name:tag` when `name` starts with a registry (a first part with a dot or a port, or
/// `localhost`): the form containerd names images by. A short name gets no containerd
/// name: azb writes no registry of its own choosing, and the loader qualifies the
/// archive's `RepoTags` by its own default.
fn qualified(name: &str, tag: &str) -> Option<String> {
    let (first, _) = name.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then(|| format!("{name}:{tag}"))
}

/// Whether `file` is `size` bytes long and ends with `tail`: the archive this module
/// would write (its blobs are named by digest in the documents the tail holds, and their
/// sizes add up), so it is left as it is. A cheap check: blob bytes are not re-read.
fn holds(file: &Path, size: u64, tail: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut opened) = err::File::open(file) else {
        return false;
    };
    if opened
        .metadata()
        .map_or(true, |m| !m.is_file() || m.len() != size)
    {
        return false;
    }
    let mut found = vec![0; tail.len()];
    opened.seek(SeekFrom::End(-(tail.len() as i64))).is_ok()
        && opened.read_exact(&mut found).is_ok()
        && found == tail
}

/// Writes the docker-archive `file` (atomically: a temp file beside it, then a rename),
/// unless it holds exactly this archive already.
pub(crate) fn write(
    file: &Path,
    blobs: &Blobs,
    image: &ArchiveImage,
    mtime: i64,
) -> Result<(), Error> {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    let io = |source| Error::Archive {
        path: file.to_owned(),
        source,
    };
    let entries = image
        .tags
        .iter()
        .map(|tag| {
            let mut pairs = vec![(REF_NAME, tag.clone())];
            if let Some(name) = qualified(image.name, tag) {
                pairs.insert(0, (CONTAINERD_NAME, name));
            }
            annotated(image.manifest, &pairs)
        })
        .collect();
    let docker = [DockerManifest {
        config: blob_entry(&image.config),
        repo_tags: image
            .tags
            .iter()
            .map(|tag| format!("{}:{tag}", image.name))
            .collect(),
        layers: image.layers.iter().map(blob_entry).collect(),
    }];
    let index_json = index(entries);
    let manifest_json = canonical_json(&docker);
    let files: [(&str, &[u8]); 3] = [
        ("index.json", &index_json),
        ("manifest.json", &manifest_json),
        ("oci-layout", OCI_LAYOUT),
    ];
    // The documents come last: the tail of the file says which image it holds.
    let mut tail = NormalTar::new(Vec::new(), mtime);
    for (path, bytes) in files {
        tail.file(path, 0o644, bytes.len() as u64, bytes)
            .map_err(io)?;
    }
    let tail = tail.finish().map_err(io)?;
    let blocks = |len: u64| len.div_ceil(512) * 512;
    let size = 2 * 512
        + blobs
            .iter()
            .map(|(_, _, len)| 512 + blocks(len))
            .sum::<u64>()
        + tail.len() as u64;
    if holds(file, size, &tail) {
        return Ok(());
    }
    let tmp = crate::fs::temp_file_in(parent)
        .map_err(|e| FsError::new("create a temp file in", parent, e))?;
    let mut tar = NormalTar::new(io::BufWriter::new(tmp.as_file()), mtime);
    for dir in ["blobs", "blobs/sha256"] {
        tar.dir(dir).map_err(io)?;
    }
    for (digest, source, _) in blobs.iter() {
        match source {
            BlobSource::Bytes(bytes) => {
                tar.file(&blob_entry(digest), 0o644, bytes.len() as u64, &bytes[..])
                    .map_err(io)?;
            }
            BlobSource::File(path) => {
                // Hashed while copied; on a mismatch the temp file is dropped, not renamed.
                let opened =
                    err::File::open(path).map_err(|e| FsError::new("open blob", path, e))?;
                let len = opened
                    .metadata()
                    .map_err(|e| FsError::new("read metadata of", path, e))?
                    .len();
                let mut reader = HashingReader::new(opened);
                tar.file(&blob_entry(digest), 0o644, len, &mut reader)
                    .map_err(io)?;
                let found = reader.finish();
                if found.sha256 != *digest {
                    return Err(Error::BlobMismatch {
                        path: path.clone(),
                        expected: digest.oci_digest(),
                        found: found.sha256.oci_digest(),
                    });
                }
            }
        }
    }
    for (path, bytes) in files {
        tar.file(path, 0o644, bytes.len() as u64, bytes)
            .map_err(io)?;
    }
    tar.finish().map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(file)
        .map_err(|e| FsError::new("rename temp file onto", file, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_a_registry_get_a_containerd_name() {
        assert_eq!(qualified("postgres", "18"), None);
        assert_eq!(qualified("azb/postgres", "18"), None);
        assert_eq!(
            qualified("registry.example/azb/postgres", "18").as_deref(),
            Some("registry.example/azb/postgres:18")
        );
        assert_eq!(
            qualified("localhost:5000/pg", "18").as_deref(),
            Some("localhost:5000/pg:18")
        );
        assert_eq!(
            qualified("localhost/pg", "18").as_deref(),
            Some("localhost/pg:18")
        );
    }
}
