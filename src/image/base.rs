//! Reading a base image from an OCI image layout directory: `index.json`, the entry chosen
//! by ref name and/or platform (through nested indexes), its manifest and config. Every
//! document read is checked against its digest; layer blobs are checked when copied.

use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};

use super::Error;
use super::oci::REF_NAME;
use crate::digest::Sha256;
use crate::fs::{FsError, err};
use crate::recipe::Platform;

/// Nested indexes followed at most (a loop of indexes is an error, not a hang).
const MAX_DEPTH: usize = 4;

/// A base image: what the image's own layers go on.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// Its config, to extend.
    pub config: ImageConfiguration,
    /// Its layers (gzip and tar layers with OCI media types), reused unchanged.
    pub layers: Vec<Descriptor>,
    /// The layout directory holding the blobs.
    pub dir: PathBuf,
}

/// The sha256 a digest names; other algorithms cannot be checked, so they are refused.
pub(crate) fn sha256_of(dir: &Path, digest: &Digest) -> Result<Sha256, Error> {
    let unsupported = || Error::UnsupportedDigest {
        dir: dir.to_owned(),
        digest: digest.to_string(),
    };
    if *digest.algorithm() != DigestAlgorithm::Sha256 {
        return Err(unsupported());
    }
    digest.digest().parse().map_err(|_| unsupported())
}

/// The path of a blob in a layout.
pub(crate) fn blob_path(dir: &Path, digest: &Sha256) -> PathBuf {
    dir.join("blobs/sha256").join(digest.to_string())
}

/// Reads a blob, checking its sha256.
fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<(PathBuf, Vec<u8>), Error> {
    let expected = sha256_of(dir, descriptor.digest())?;
    let path = blob_path(dir, &expected);
    let bytes = err::read(&path).map_err(|e| FsError::new("read blob", &path, e))?;
    let found = Sha256::of(&bytes);
    if found != expected {
        return Err(Error::BlobMismatch {
            path,
            expected: expected.oci_digest(),
            found: found.oci_digest(),
        });
    }
    Ok((path, bytes))
}

fn document<T>(
    dir: &Path,
    descriptor: &Descriptor,
    parse: impl Fn(&[u8]) -> Result<T, oci_spec::OciSpecError>,
) -> Result<T, Error> {
    let (path, bytes) = read_blob(dir, descriptor)?;
    parse(&bytes).map_err(|source| Error::Document { path, source })
}

fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(other) => {
            other == "application/vnd.docker.distribution.manifest.list.v2+json"
        }
        _ => false,
    }
}

/// False only when the descriptor names a platform and it is not `platform`.
fn may_be_for(descriptor: &Descriptor, platform: Platform) -> bool {
    descriptor.platform().as_ref().is_none_or(|p| {
        p.architecture().to_string() == platform.oci_arch() && p.os().to_string() == "linux"
    })
}

/// Docker's layer media types as their OCI equivalents (the bytes are the same).
fn oci_layer(mut descriptor: Descriptor) -> Descriptor {
    if let MediaType::Other(other) = descriptor.media_type() {
        let oci = match other.as_str() {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
            "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
            _ => return descriptor,
        };
        descriptor.set_media_type(oci);
    }
    descriptor
}

/// Follows `descriptor` to a manifest for `platform`; remembers configs of another
/// architecture in `wrong` (to explain why nothing matched).
fn resolve(
    dir: &Path,
    descriptor: &Descriptor,
    platform: Platform,
    depth: usize,
    wrong: &mut Option<String>,
) -> Result<Option<Base>, Error> {
    if is_index(descriptor.media_type()) {
        if depth >= MAX_DEPTH {
            return Ok(None);
        }
        let index = document(dir, descriptor, |b| ImageIndex::from_reader(b))?;
        for child in index.manifests().iter().filter(|d| may_be_for(d, platform)) {
            if let Some(base) = resolve(dir, child, platform, depth + 1, wrong)? {
                return Ok(Some(base));
            }
        }
        return Ok(None);
    }
    let manifest = document(dir, descriptor, |b| ImageManifest::from_reader(b))?;
    let config = document(dir, manifest.config(), |b| {
        ImageConfiguration::from_reader(b)
    })?;
    let found = config.architecture().to_string();
    if found != platform.oci_arch() {
        wrong.get_or_insert(found);
        return Ok(None);
    }
    Ok(Some(Base {
        config,
        layers: manifest.layers().iter().cloned().map(oci_layer).collect(),
        dir: dir.to_owned(),
    }))
}

/// Reads the base for `platform` from the layout `dir`: the first `index.json` entry
/// named `reference` (any entry when `None`) that is, or leads through nested indexes
/// to, a manifest whose config is for `platform`'s architecture.
pub(crate) fn read(dir: &Path, reference: Option<&str>, platform: Platform) -> Result<Base, Error> {
    let index_path = dir.join("index.json");
    let bytes = err::read(&index_path)
        .map_err(|e| FsError::new("read base image index", &index_path, e))?;
    let index = ImageIndex::from_reader(&bytes[..]).map_err(|source| Error::Document {
        path: index_path.clone(),
        source,
    })?;
    let named = |d: &&Descriptor| {
        reference.is_none_or(|r| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_some_and(|name| name == r)
        })
    };
    let mut wrong = None;
    for descriptor in index.manifests().iter().filter(named) {
        if !may_be_for(descriptor, platform) {
            if let Some(p) = descriptor.platform() {
                wrong.get_or_insert(p.architecture().to_string());
            }
            continue;
        }
        if let Some(base) = resolve(dir, descriptor, platform, 0, &mut wrong)? {
            return Ok(base);
        }
    }
    Err(match wrong {
        Some(found) => Error::BaseArchitecture {
            dir: dir.to_owned(),
            found,
            platform,
        },
        None => Error::BaseNotFound {
            dir: dir.to_owned(),
            reference: reference.map(str::to_owned),
            platform,
        },
    })
}

/// When the base image chosen as [`read`] chooses it was created (its config's `created`),
/// in unix seconds; `None` when the config does not say.
pub fn created(
    dir: &Path,
    reference: Option<&str>,
    platform: Platform,
) -> Result<Option<i64>, Error> {
    let base = read(dir, reference, platform)?;
    Ok(base
        .config
        .created()
        .as_deref()
        .and_then(|text| humantime::parse_rfc3339_weak(text).ok())
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_secs() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testing::{Fixture, base_layout};

    #[test]
    fn picks_the_platform_through_a_nested_index_and_by_ref_name() {
        let dir = tempfile::tempdir().unwrap();
        base_layout(
            dir.path(),
            &[Platform::Amd64, Platform::Arm64],
            Fixture::Nested,
        );
        for platform in Platform::ALL {
            let base = read(dir.path(), Some("base"), platform).unwrap();
            assert_eq!(base.config.architecture().to_string(), platform.oci_arch());
            assert_eq!(base.layers.len(), 1);
        }
        assert!(matches!(
            read(dir.path(), Some("other"), Platform::Amd64),
            Err(Error::BaseNotFound { .. })
        ));
    }

    #[test]
    fn a_base_for_another_architecture_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        base_layout(dir.path(), &[Platform::Amd64], Fixture::Flat);
        let error = read(dir.path(), None, Platform::Arm64).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is for architecture `amd64`, not linux/arm64"),
            "{error}"
        );
    }

    #[test]
    fn a_tampered_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        base_layout(dir.path(), &[Platform::Amd64], Fixture::Flat);
        let index: serde_json::Value =
            serde_json::from_slice(&err::read(dir.path().join("index.json")).unwrap()).unwrap();
        let digest: Digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let path = blob_path(dir.path(), &sha256_of(dir.path(), &digest).unwrap());
        let mut bytes = err::read(&path).unwrap();
        bytes.push(b' ');
        err::write(&path, bytes).unwrap();
        let error = read(dir.path(), None, Platform::Amd64).unwrap_err();
        assert!(matches!(error, Error::BlobMismatch { .. }), "{error}");
    }
}
