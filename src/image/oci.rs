//! OCI documents and the OCI image layout: the image config (the base's, extended), the
//! manifest, indexes, a blob set, and writing it all to a layout directory. Every document
//! is serialised as canonical JSON (object keys sorted at every level), because oci-spec
//! keeps labels, annotations, exposed ports and volumes in hash maps.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, Digest, History, ImageConfiguration, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, PlatformBuilder, SCHEMA_VERSION,
};
use serde::Serialize;

use super::Error;
use super::layer::{Blob, BlobBytes};
use crate::digest::{HashingWriter, Sha256};
use crate::fs::{FsError, err, write_atomic};
use crate::recipe::Platform;
use crate::runtime::rfc3339;

/// The annotation naming an entry of an OCI layout's index.json (a tag).
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Content of the `oci-layout` file.
pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Where a blob's bytes are.
#[derive(Debug)]
pub(crate) enum BlobSource {
    /// In memory (documents and azb's layers).
    Bytes(Vec<u8>),
    /// A base layout's blob file, checked against its digest whenever it is copied.
    File(PathBuf),
}

/// Every blob of the output by sha256, so each is written once and in a fixed order.
#[derive(Debug, Default)]
pub(crate) struct Blobs(BTreeMap<Sha256, (BlobSource, u64)>);

impl Blobs {
    /// Adds bytes; returns their descriptor.
    pub fn add_bytes(&mut self, media_type: MediaType, bytes: Vec<u8>) -> Descriptor {
        let digest = Sha256::of(&bytes);
        let size = bytes.len() as u64;
        self.0.insert(digest, (BlobSource::Bytes(bytes), size));
        Descriptor::new(media_type, size, digest.oci_digest())
    }

    /// Adds a gzip layer blob; returns its descriptor.
    pub fn add_layer(&mut self, blob: Blob) -> Descriptor {
        match blob.bytes {
            BlobBytes::Memory(bytes) => self.add_bytes(MediaType::ImageLayerGzip, bytes),
            BlobBytes::File(path) => {
                self.add_file(blob.digest, path, blob.size);
                Descriptor::new(
                    MediaType::ImageLayerGzip,
                    blob.size,
                    blob.digest.oci_digest(),
                )
            }
        }
    }

    /// Adds a blob file of a base layout or the store.
    pub fn add_file(&mut self, digest: Sha256, path: PathBuf, size: u64) {
        self.0.insert(digest, (BlobSource::File(path), size));
    }

    /// The blobs by digest, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&Sha256, &BlobSource, u64)> {
        self.0
            .iter()
            .map(|(digest, (source, size))| (digest, source, *size))
    }
}

/// JSON with object keys sorted at every level: the same document is always the same bytes.
pub(crate) fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => items.into_iter().map(sort).collect(),
            other => other,
        }
    }
    let value = serde_json::to_value(value).expect("OCI documents serialise to JSON");
    serde_json::to_vec(&sort(value)).expect("a JSON value serialises")
}

/// A layer azb adds: what made it (for the history) and its diff_id.
#[derive(Debug, Clone)]
pub(crate) struct AddedLayer {
    /// History `created_by`, e.g. `azb extension vector`.
    pub created_by: String,
    /// sha256 of the uncompressed tar.
    pub diff_id: Sha256,
}

/// The image config: the base's (Env, Entrypoint, Cmd, User, WorkingDir, ExposedPorts,
/// StopSignal, Volumes, Labels kept), with `created`, the added layers' diff_ids and
/// history entries, and `labels` merged over the base's.
pub(crate) fn config(
    base: &ImageConfiguration,
    base_layers: usize,
    added: &[AddedLayer],
    created: i64,
    labels: &BTreeMap<String, String>,
    changes: &super::RunConfig,
) -> ImageConfiguration {
    let created = rfc3339(created);
    let mut config = base.clone();
    config.set_created(Some(created.clone()));
    // Without a base history, give each base layer an entry so entries and layers pair up.
    let mut history = config.history().clone().unwrap_or_else(|| {
        let mut entry = History::default();
        entry.set_created_by(Some("base image layer".to_owned()));
        vec![entry; base_layers]
    });
    for layer in added {
        let mut entry = History::default();
        entry.set_created(Some(created.clone()));
        entry.set_created_by(Some(layer.created_by.clone()));
        history.push(entry);
        let diff_ids = config.rootfs_mut().diff_ids_mut();
        diff_ids.push(layer.diff_id.oci_digest().to_string());
    }
    config.set_history(Some(history));
    let mut run = config.config().clone().unwrap_or_default();
    let mut merged: HashMap<String, String> = run.labels().clone().unwrap_or_default();
    merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    run.set_labels((!merged.is_empty()).then_some(merged));
    if let Some(entrypoint) = &changes.entrypoint {
        run.set_entrypoint(Some(entrypoint.clone()));
    }
    if let Some(cmd) = &changes.cmd {
        run.set_cmd(Some(cmd.clone()));
    }
    if let Some(user) = &changes.user {
        run.set_user(Some(user.clone()));
    }
    if !changes.env.is_empty() {
        let mut env: Vec<String> = run
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| {
                let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
                !changes.env.contains_key(name)
            })
            .collect();
        env.extend(changes.env.iter().map(|(k, v)| format!("{k}={v}")));
        run.set_env(Some(env));
    }
    if let Some(ports) = &changes.exposed_ports {
        run.set_exposed_ports((!ports.is_empty()).then(|| ports.clone()));
    }
    if let Some(signal) = &changes.stop_signal {
        run.set_stop_signal(Some(signal.clone()));
    }
    if let Some(volumes) = &changes.volumes {
        run.set_volumes((!volumes.is_empty()).then(|| volumes.clone()));
    }
    config.set_config(Some(run));
    config
}

/// The manifest of one platform's image, as canonical JSON.
pub(crate) fn manifest(config: Descriptor, layers: Vec<Descriptor>) -> Vec<u8> {
    manifest_annotated(config, layers, &BTreeMap::new())
}

/// The manifest of one platform's image with `annotations` (none: no field), as canonical
/// JSON.
pub(crate) fn manifest_annotated(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .expect("a manifest with schema version, config and layers is complete");
    if !annotations.is_empty() {
        manifest.set_annotations(Some(annotations.clone().into_iter().collect()));
    }
    canonical_json(&manifest)
}

/// An image index over `manifests`, as canonical JSON.
pub(crate) fn index(manifests: Vec<Descriptor>) -> Vec<u8> {
    index_annotated(manifests, &BTreeMap::new())
}

/// An image index over `manifests` with `annotations` (none: no field), as canonical JSON.
pub(crate) fn index_annotated(
    manifests: Vec<Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("an index with schema version and manifests is complete");
    if !annotations.is_empty() {
        index.set_annotations(Some(annotations.clone().into_iter().collect()));
    }
    canonical_json(&index)
}

/// `descriptor` with a platform field for `platform`.
pub(crate) fn with_platform(mut descriptor: Descriptor, platform: Platform) -> Descriptor {
    let oci_platform = PlatformBuilder::default()
        .architecture(platform.oci_arch())
        .os("linux")
        .build()
        .expect("a platform with os and architecture is complete");
    descriptor.set_platform(Some(oci_platform));
    descriptor
}

/// `descriptor` with exactly these annotations.
pub(crate) fn annotated(descriptor: &Descriptor, pairs: &[(&str, String)]) -> Descriptor {
    let mut d = descriptor.clone();
    let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
    d.set_annotations(Some(map.collect()));
    d
}

/// The media type of the SBOMs attached to images (CycloneDX JSON).
pub(crate) const SBOM_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// Attaches `sbom` to the image `subject` as an OCI artifact: a manifest with
/// `artifactType` CycloneDX, the empty config, the SBOM as its one layer and `subject`
/// naming the image. Returns the referrers index (the distribution spec's tag-schema
/// fallback: an image index listing the artifact, with its artifactType) to list under the
/// tag `sha256-<subject's hex>`.
pub(crate) fn sbom_referrer(blobs: &mut Blobs, subject: &Descriptor, sbom: Vec<u8>) -> Descriptor {
    let sbom_type = MediaType::Other(SBOM_MEDIA_TYPE.to_owned());
    let mut empty = blobs.add_bytes(MediaType::EmptyJSON, b"{}".to_vec());
    empty.set_data(Some("e30=".to_owned()));
    let layer = blobs.add_bytes(sbom_type.clone(), sbom);
    let plain_subject = Descriptor::new(
        subject.media_type().clone(),
        subject.size(),
        subject.digest().clone(),
    );
    let artifact = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .artifact_type(sbom_type.clone())
        .config(empty)
        .layers(vec![layer])
        .subject(plain_subject)
        .build()
        .expect("an artifact manifest with config, layers and subject is complete");
    let mut listed = blobs.add_bytes(MediaType::ImageManifest, canonical_json(&artifact));
    listed.set_artifact_type(Some(sbom_type));
    blobs.add_bytes(MediaType::ImageIndex, index(vec![listed]))
}

/// The referrers fallback tag of an image: `sha256-<hex>`.
pub(crate) fn referrers_tag(subject: &Descriptor) -> String {
    subject.digest().to_string().replace(':', "-")
}

/// The layout's index.json (see the module docs of `image`): with several platforms a
/// nested index (added to `blobs`, digest returned) under each tag, plus each platform's
/// manifest as `<first tag>-<arch>`; with one platform its manifest under each tag and as
/// `<first tag>-<arch>`.
pub(crate) fn layout_index(
    blobs: &mut Blobs,
    tags: &[String],
    manifests: &[(Platform, Descriptor)],
    sboms: &[Option<Vec<u8>>],
) -> (Option<Digest>, Vec<u8>) {
    let (top, index_digest) = match manifests {
        [(_, only)] => (only.clone(), None),
        _ => {
            let nested = index(manifests.iter().map(|(_, d)| d.clone()).collect());
            let descriptor = blobs.add_bytes(MediaType::ImageIndex, nested);
            let digest = descriptor.digest().clone();
            (descriptor, Some(digest))
        }
    };
    let mut entries: Vec<Descriptor> = tags
        .iter()
        .map(|tag| annotated(&top, &[(REF_NAME, tag.clone())]))
        .collect();
    for (platform, manifest) in manifests {
        let name = format!("{}-{}", tags[0], platform.oci_arch());
        entries.push(annotated(manifest, &[(REF_NAME, name)]));
    }
    // Each platform's SBOM, attached to its manifest, found through the fallback tag.
    for ((_, manifest), sbom) in manifests.iter().zip(sboms) {
        if let Some(sbom) = sbom {
            let referrers = sbom_referrer(blobs, manifest, sbom.clone());
            entries.push(annotated(
                &referrers,
                &[(REF_NAME, referrers_tag(manifest))],
            ));
        }
    }
    (index_digest, index(entries))
}

/// Copies the blob file `from` into `to`, failing when its sha256 is not `expected`.
pub(crate) fn copy_checked(
    from: &Path,
    expected: &Sha256,
    to: &mut dyn Write,
) -> Result<(), Error> {
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
            expected: expected.oci_digest(),
            found: digests.sha256.oci_digest(),
        });
    }
    Ok(())
}

/// Writes an OCI image layout at `dir`: missing blobs (a present blob of the right size is
/// kept: blobs are named by their digest, and every byte copied in is checked against it),
/// then `oci-layout` and `index.json` unless they hold these bytes already, each
/// atomically. A layout that already holds the image gets no write at all.
pub(crate) fn write_layout(dir: &Path, blobs: &Blobs, index_json: &[u8]) -> Result<(), Error> {
    let blob_dir = dir.join("blobs/sha256");
    err::create_dir_all(&blob_dir).map_err(|e| FsError::new("create directory", &blob_dir, e))?;
    let present =
        |path: &Path, size: u64| err::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size);
    let holds = |path: &Path, bytes: &[u8]| {
        present(path, bytes.len() as u64) && err::read(path).is_ok_and(|found| found == bytes)
    };
    let missing: Vec<_> = blobs
        .iter()
        .filter(|(digest, _, size)| !present(&blob_dir.join(digest.to_string()), *size))
        .collect();
    let documents = [
        (dir.join("oci-layout"), OCI_LAYOUT),
        (dir.join("index.json"), index_json),
    ];
    if missing.is_empty() && documents.iter().all(|(path, bytes)| holds(path, bytes)) {
        return Ok(());
    }
    let tmp = tempfile::Builder::new()
        .prefix(".azb-tmp-")
        .tempdir_in(dir)
        .map_err(|e| FsError::new("create a temp directory in", dir, e))?;
    for (digest, source, _) in missing {
        let target = blob_dir.join(digest.to_string());
        match source {
            BlobSource::Bytes(bytes) => write_atomic(tmp.path(), &target, bytes)?,
            BlobSource::File(path) => {
                let mut file = crate::fs::temp_file_in(tmp.path())
                    .map_err(|e| FsError::new("create a temp file in", tmp.path(), e))?;
                copy_checked(path, digest, &mut file)?;
                file.as_file()
                    .sync_all()
                    .map_err(|e| FsError::new("write temp file for", &target, e))?;
                file.persist(&target)
                    .map_err(|e| FsError::new("rename temp file onto", &target, e.error))?;
            }
        }
    }
    for (path, bytes) in &documents {
        if !holds(path, bytes) {
            write_atomic(tmp.path(), path, bytes)?;
        }
    }
    tmp.close()
        .map_err(|e| FsError::new("remove temp directory in", dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let inner: HashMap<String, u32> = (0..40).map(|i| (format!("k{i:02}"), i)).collect();
        let outer: HashMap<&str, &HashMap<String, u32>> = [("b", &inner), ("a", &inner)].into();
        let text = String::from_utf8(canonical_json(&outer)).unwrap();
        let inner_text: Vec<String> = (0..40).map(|i| format!("\"k{i:02}\":{i}")).collect();
        let inner_text = inner_text.join(",");
        assert_eq!(
            text,
            format!("{{\"a\":{{{inner_text}}},\"b\":{{{inner_text}}}}}")
        );
    }

    #[test]
    fn config_keeps_the_base_and_appends_layers_history_and_labels() {
        let base: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["postgres"], "User": "postgres",
                       "ExposedPorts": {"5432/tcp": {}}, "StopSignal": "SIGINT",
                       "Volumes": {"/var/lib/postgresql/data": {}}, "Labels": {"a": "base", "b": "base"}},
            "rootfs": {"type": "layers", "diff_ids": [Sha256::of(b"0").oci_digest().to_string()]}
        }))
        .unwrap();
        let added = [AddedLayer {
            created_by: "azb extension vector".into(),
            diff_id: Sha256::of(b"1"),
        }];
        let labels = BTreeMap::from([("b".to_owned(), "azb".to_owned())]);
        let config = config(
            &base,
            1,
            &added,
            86_400,
            &labels,
            &super::super::RunConfig::default(),
        );
        let json: serde_json::Value = serde_json::from_slice(&canonical_json(&config)).unwrap();
        assert_eq!(json["created"], "1970-01-02T00:00:00Z");
        assert_eq!(
            json["config"]["Labels"],
            serde_json::json!({"a": "base", "b": "azb"})
        );
        assert_eq!(json["config"]["User"], "postgres");
        assert_eq!(
            json["config"]["ExposedPorts"],
            serde_json::json!({"5432/tcp": {}})
        );
        assert_eq!(json["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(json["history"][0]["created_by"], "base image layer");
        assert_eq!(json["history"][1]["created_by"], "azb extension vector");
        assert_eq!(json["history"][1]["created"], "1970-01-02T00:00:00Z");
    }

    #[test]
    fn existing_blobs_are_kept_and_damaged_ones_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = Blobs::default();
        let one = blobs.add_bytes(MediaType::ImageConfig, b"{}".to_vec());
        let two = blobs.add_bytes(MediaType::ImageConfig, b"[]".to_vec());
        write_layout(dir.path(), &blobs, b"{}").unwrap();
        let path = |d: &Descriptor| dir.path().join("blobs/sha256").join(d.digest().digest());
        err::write(path(&two), b"tampered").unwrap();
        let before = err::metadata(path(&one)).unwrap().modified().unwrap();
        write_layout(dir.path(), &blobs, b"{}").unwrap();
        assert_eq!(err::read(path(&two)).unwrap(), b"[]");
        assert_eq!(
            err::metadata(path(&one)).unwrap().modified().unwrap(),
            before
        );
        let names: Vec<_> = err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            names,
            ["blobs", "index.json", "oci-layout"],
            "no temp dir left"
        );
        // A layout that holds the image already: nothing is written, not even index.json.
        use fs_err::os::unix::fs::OpenOptionsExt;
        use std::os::unix::fs::MetadataExt;
        let ctimes = || {
            ["index.json", "oci-layout"]
                .map(|f| err::metadata(dir.path().join(f)).unwrap())
                .map(|m| (m.ctime(), m.ctime_nsec()))
        };
        let before = ctimes();
        write_layout(dir.path(), &blobs, b"{}").unwrap();
        assert_eq!(ctimes(), before);
        // Readable by others (0644 less the umask), unlike a bare temp file's 0600.
        let reference = dir.path().join("reference");
        err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&reference)
            .unwrap();
        let mode = |p: &Path| err::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path(&one)), mode(&reference));
        assert_eq!(mode(&dir.path().join("index.json")), mode(&reference));
    }
}
