//! Test fixtures: artifact tars and small base image layouts, written by hand.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::image::{Descriptor, MediaType};

use super::ArtifactLayer;
use super::layer::{Entry, LayerContent};
use super::oci::{self, Blobs, REF_NAME};
use crate::recipe::Platform;

/// Where the artifacts tests make keep their object files (for the life of the process).
fn objects() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// An artifact whose object holds `tar`, with no stored layer.
pub(crate) fn artifact_from_tar(name: &str, tar: &[u8]) -> ArtifactLayer {
    let object = tempfile::NamedTempFile::new_in(objects()).unwrap();
    zstd::stream::copy_encode(tar, object.as_file(), 1).unwrap();
    ArtifactLayer {
        name: name.to_owned(),
        object: object.into_temp_path().keep().unwrap(),
        tar_size: tar.len() as u64,
        layer: None,
        mtime: 1_700_000_000,
    }
}

/// An artifact tar with the given (path, content, mode) files, in this order.
pub(crate) fn artifact(name: &str, files: &[(&str, &[u8], u32)]) -> ArtifactLayer {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(123_456);
        h.set_uid(1000);
        // The raw name, so tests can also write paths tar::Builder refuses (`..`).
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    artifact_from_tar(name, &builder.into_inner().unwrap())
}

/// How the base layout's index.json points at the platform manifests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fixture {
    /// Each manifest directly, named `base`, without a platform field.
    Flat,
    /// One nested index named `base`, listing the manifests with their platforms.
    Nested,
}

/// Writes a base image layout with one small layer per platform.
pub(crate) fn base_layout(dir: &Path, platforms: &[Platform], fixture: Fixture) {
    let mut blobs = Blobs::default();
    let mut manifests = Vec::new();
    for &platform in platforms {
        let mut layer = LayerContent::default();
        let os_release = format!("ID=azb-test\nARCH={}\n", platform.oci_arch());
        layer.insert(
            "etc/os-release",
            Entry::File(os_release.into_bytes(), 0o644),
        );
        layer.insert(
            "usr/lib/postgresql/18/bin/postgres",
            Entry::File(b"#!/bin/sh\n".to_vec(), 0o755),
        );
        layer.insert(
            "usr/bin/postgres",
            Entry::Symlink("../lib/postgresql/18/bin/postgres".into()),
        );
        let blob = layer.seal(1_600_000_000).unwrap();
        let layer = blobs.add_bytes(MediaType::ImageLayerGzip, blob.memory().to_vec());
        let config = serde_json::json!({
            "architecture": platform.oci_arch(),
            "os": "linux",
            "created": "2020-09-13T12:26:40Z",
            "config": {
                "Env": ["PATH=/usr/lib/postgresql/18/bin:/usr/bin", "PGDATA=/var/lib/postgresql/data"],
                "Cmd": ["postgres"],
                "ExposedPorts": {"5432/tcp": {}},
                "Volumes": {"/var/lib/postgresql/data": {}},
                "StopSignal": "SIGINT",
                "Labels": {"org.example.base": "yes", "org.example.z": "1"}
            },
            "rootfs": {"type": "layers", "diff_ids": [blob.diff_id.oci_digest().to_string()]},
            "history": [{"created": "2020-09-13T12:26:40Z", "created_by": "base"}]
        });
        let config = blobs.add_bytes(MediaType::ImageConfig, serde_json::to_vec(&config).unwrap());
        let manifest =
            blobs.add_bytes(MediaType::ImageManifest, oci::manifest(config, vec![layer]));
        manifests.push((platform, manifest));
    }
    let named = |d: &Descriptor| oci::annotated(d, &[(REF_NAME, "base".to_owned())]);
    let entries = match fixture {
        Fixture::Flat => manifests.iter().map(|(_, m)| named(m)).collect(),
        Fixture::Nested => {
            let with_platforms = manifests
                .iter()
                .map(|(p, m)| oci::with_platform(m.clone(), *p))
                .collect();
            vec![named(&blobs.add_bytes(
                MediaType::ImageIndex,
                oci::index(with_platforms),
            ))]
        }
    };
    oci::write_layout(dir, &blobs, &oci::index(entries)).unwrap();
}

/// Labels the tests add.
pub(crate) fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("io.azb.postgresql.version".to_owned(), "18.6".to_owned())])
}
