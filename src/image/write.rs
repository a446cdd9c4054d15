//! Writing images out: an OCI image layout directory, or a docker-archive tar that
//! `docker load` reads (Docker's manifest.json plus the same OCI layout). Blobs are
//! written atomically; base blobs are copied byte for byte and checked while copied.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::Error;
use crate::digest::{HashingWriter, Sha256};
use crate::fs::{FsError, err, write_atomic};

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum BlobData {
    /// In memory.
    Bytes(Arc<Vec<u8>>),
    /// A file (a base image blob), to be checked against its digest while copied.
    File(PathBuf, u64),
}

impl BlobData {
    fn len(&self) -> u64 {
        match self {
            BlobData::Bytes(b) => b.len() as u64,
            BlobData::File(_, len) => *len,
        }
    }
}

/// Every blob of an image, by sha256.
#[derive(Debug, Default)]
pub struct Blobs(pub BTreeMap<Sha256, BlobData>);

impl Blobs {
    /// Adds bytes; returns their digest.
    pub fn add_bytes(&mut self, bytes: Vec<u8>) -> Sha256 {
        let digest = Sha256::of(&bytes);
        self.0.insert(digest, BlobData::Bytes(Arc::new(bytes)));
        digest
    }
}

/// JSON with sorted object keys at every level (oci-spec keeps labels and annotations in
/// hash maps, whose order is random), so the same document is always the same bytes.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("OCI documents serialise");
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// Copies `from` into `to`, failing when the bytes' sha256 is not `expected`.
fn copy_checked(from: &Path, expected: &Sha256, to: &mut dyn Write) -> Result<(), Error> {
    let mut file = err::File::open(from).map_err(|e| FsError::new("open blob", from, e))?;
    let mut hashing = HashingWriter::new(to);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| FsError::new("read blob", from, e))?;
        if n == 0 {
            break;
        }
        hashing
            .write_all(&buffer[..n])
            .map_err(|e| FsError::new("copy blob", from, e))?;
    }
    let (_, digests) = hashing.finish();
    if digests.sha256 != *expected {
        return Err(Error::BlobMismatch {
            path: from.to_owned(),
            expected: expected.oci_digest().to_string(),
            found: digests.sha256.to_string(),
        });
    }
    Ok(())
}

/// Writes an OCI image layout at `dir` with `index` as index.json. Blobs already present
/// with the right content are kept.
pub fn oci_dir(dir: &Path, blobs: &Blobs, index: &[u8]) -> Result<(), Error> {
    let blob_dir = dir.join("blobs/sha256");
    err::create_dir_all(&blob_dir).map_err(|e| FsError::new("create directory", &blob_dir, e))?;
    let tmp = dir.join(".azb-tmp");
    err::create_dir_all(&tmp).map_err(|e| FsError::new("create directory", &tmp, e))?;
    for (digest, data) in &blobs.0 {
        let target = blob_dir.join(digest.to_string());
        if target.is_file() && err::read(&target).is_ok_and(|b| Sha256::of(&b) == *digest) {
            continue;
        }
        match data {
            BlobData::Bytes(bytes) => write_atomic(&tmp, &target, bytes)?,
            BlobData::File(path, _) => {
                let mut file = tempfile::NamedTempFile::new_in(&tmp)
                    .map_err(|e| FsError::new("create a temp file in", &tmp, e))?;
                copy_checked(path, digest, &mut file)?;
                file.persist(&target)
                    .map_err(|e| FsError::new("move blob into", &target, e.error))?;
            }
        }
    }
    write_atomic(
        &tmp,
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write_atomic(&tmp, &dir.join("index.json"), index)?;
    err::remove_dir_all(&tmp).map_err(|e| FsError::new("remove", &tmp, e))?;
    Ok(())
}

/// Writes a docker-archive at `file`: `manifest.json` for `docker load`, and the same
/// image as an OCI layout (oci-layout, index.json, blobs/), entries in a fixed order.
pub fn docker_archive(
    file: &Path,
    blobs: &Blobs,
    index: &[u8],
    manifest_json: &[u8],
    mtime: i64,
) -> Result<(), Error> {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    let tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| FsError::new("create a temp file in", parent, e))?;
    let io = |e| Error::Fs(FsError::new("write docker archive", file, e));
    let mut builder = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    let header = |size: u64, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(mtime.max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        builder
            .append_data(
                &mut header(0, tar::EntryType::Directory),
                dir,
                std::io::empty(),
            )
            .map_err(io)?;
    }
    for (digest, data) in &blobs.0 {
        let path = format!("blobs/sha256/{digest}");
        let mut h = header(data.len(), tar::EntryType::Regular);
        match data {
            BlobData::Bytes(bytes) => builder.append_data(&mut h, &path, &bytes[..]).map_err(io)?,
            BlobData::File(source, _) => {
                // Check first, then stream: a tar entry's size is fixed before its bytes.
                copy_checked(source, digest, &mut std::io::sink())?;
                let reader =
                    err::File::open(source).map_err(|e| FsError::new("open blob", source, e))?;
                builder.append_data(&mut h, &path, reader).map_err(io)?;
            }
        }
    }
    for (path, bytes) in [
        ("index.json", index),
        ("manifest.json", manifest_json),
        ("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..]),
    ] {
        builder
            .append_data(
                &mut header(bytes.len() as u64, tar::EntryType::Regular),
                path,
                bytes,
            )
            .map_err(io)?;
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(file)
        .map_err(|e| FsError::new("move archive into", file, e.error))?;
    Ok(())
}
