//! Reading a base image from an OCI image layout directory: the manifest for a platform
//! (through a nested index if there is one), its config, and its layer blobs, each
//! checked against its digest before use.

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::Error;
use crate::digest::Sha256;
use crate::fs::{FsError, err};
use crate::recipe::Platform;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A base image: what the image's own layers go on.
#[derive(Debug, Clone)]
pub struct Base {
    /// Its config, to extend.
    pub config: ImageConfiguration,
    /// Its layers, reused unchanged.
    pub layers: Vec<Descriptor>,
    /// The layout directory holding the blobs.
    pub dir: PathBuf,
}

/// The path of a blob in a layout.
pub fn blob_path(dir: &Path, descriptor: &Descriptor) -> PathBuf {
    let digest = descriptor.digest();
    dir.join("blobs")
        .join(digest.algorithm().as_ref())
        .join(digest.digest())
}

/// Reads a blob, checking its sha256.
pub fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, Error> {
    let path = blob_path(dir, descriptor);
    let bytes = err::read(&path).map_err(|e| FsError::new("read blob", &path, e))?;
    let found = Sha256::of(&bytes);
    if found.oci_digest() != *descriptor.digest() {
        return Err(Error::BlobMismatch {
            path,
            expected: descriptor.digest().to_string(),
            found: found.to_string(),
        });
    }
    Ok(bytes)
}

fn parse<T>(
    path: &Path,
    bytes: &[u8],
    read: impl Fn(&[u8]) -> Result<T, oci_spec::OciSpecError>,
) -> Result<T, Error> {
    read(bytes).map_err(|source| Error::Document {
        path: path.to_owned(),
        source,
    })
}

fn platform_matches(descriptor: &Descriptor, platform: Platform) -> bool {
    descriptor
        .platform()
        .as_ref()
        .is_none_or(|p| p.architecture().to_string() == platform.oci_arch())
}

/// Reads the base for `platform` from the layout `dir`, optionally by ref name.
pub fn read(dir: &Path, reference: Option<&str>, platform: Platform) -> Result<Base, Error> {
    let not_found = || Error::BaseNotFound {
        dir: dir.to_owned(),
        reference: reference.map(str::to_owned),
        platform,
    };
    let index_path = dir.join("index.json");
    let bytes = err::read(&index_path)
        .map_err(|e| FsError::new("read base image index", &index_path, e))?;
    let index = parse(&index_path, &bytes, |b| ImageIndex::from_reader(b))?;
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            reference.is_none_or(|r| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == r)
            })
        })
        .filter(|d| platform_matches(d, platform))
        .collect();
    let mut descriptor = (*candidates.first().ok_or_else(not_found)?).clone();
    if *descriptor.media_type() == MediaType::ImageIndex {
        let nested_path = blob_path(dir, &descriptor);
        let nested = parse(&nested_path, &read_blob(dir, &descriptor)?, |b| {
            ImageIndex::from_reader(b)
        })?;
        descriptor = nested
            .manifests()
            .iter()
            .find(|d| d.platform().is_some() && platform_matches(d, platform))
            .cloned()
            .ok_or_else(not_found)?;
    }
    let manifest_path = blob_path(dir, &descriptor);
    let manifest = parse(&manifest_path, &read_blob(dir, &descriptor)?, |b| {
        ImageManifest::from_reader(b)
    })?;
    let config_path = blob_path(dir, manifest.config());
    let config = parse(&config_path, &read_blob(dir, manifest.config())?, |b| {
        ImageConfiguration::from_reader(b)
    })?;
    let found = config.architecture().to_string();
    if found != platform.oci_arch() {
        return Err(Error::BaseArchitecture {
            dir: dir.to_owned(),
            found,
            platform,
        });
    }
    Ok(Base {
        config,
        layers: manifest.layers().clone(),
        dir: dir.to_owned(),
    })
}
