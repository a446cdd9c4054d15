//! Image assembly: per platform, the base image's layers (reused byte for byte), one
//! deterministic layer per extension artifact, and a runtime layer; configs, manifests
//! and indexes with oci-spec types; output as an OCI image layout or a docker-archive.
//!
//! Owns layer content and OCI documents. Never builds, fetches or reads the store: the
//! caller hands over verified artifact tars and runtime files.
//!
//! Choices:
//! - Layer budget: at most [`LAYER_BUDGET`] extension layers. Past it, the largest
//!   artifacts (by file bytes, name breaking ties) keep their own layers and the rest fold,
//!   in image order, into one `azb-overflow` layer placed after them.
//! - OCI layout index.json: with one platform, the manifest once per tag (annotation
//!   `org.opencontainers.image.ref.name`); with several, a nested image index (one entry
//!   per platform) once per tag, plus each platform's manifest as `<first tag>-<arch>` so
//!   tools that want a single manifest (umoci) can pick one.
//! - JSON documents are written with sorted keys, so they are the same bytes everywhere.

mod base;
mod error;
mod layer;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::{
    Descriptor, History, ImageIndexBuilder, ImageManifestBuilder, MediaType, PlatformBuilder,
    SCHEMA_VERSION,
};
use rayon::prelude::*;

pub use error::Error;
pub use layer::{Blob, Entry, LayerContent};

use crate::digest::Sha256;
use crate::recipe::Platform;
use crate::runtime::{RuntimeFile, rfc3339};
use write::{BlobData, Blobs, canonical_json};

/// Extension layers per image before small ones fold into an overflow layer.
pub const LAYER_BUDGET: usize = 30;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What to assemble.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// Repository name, e.g. `azb/postgres`.
    pub name: String,
    /// Tags; the first is the main one.
    pub tags: Vec<String>,
    /// One image per platform.
    pub platforms: Vec<PlatformImage>,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform.
    pub platform: Platform,
    /// OCI image layout directory holding the base image.
    pub base: PathBuf,
    /// Ref name of the base manifest; None picks by platform.
    pub base_ref: Option<String>,
    /// PostgreSQL major version (for the Debian layout paths).
    pub pg_major: u32,
    /// Extension artifacts, one layer each, in this order.
    pub artifacts: Vec<ArtifactLayer>,
    /// Files of the runtime layer.
    pub runtime_files: Vec<RuntimeFile>,
    /// Unix time of every layer entry and of the config.
    pub created: i64,
    /// Labels added to the config.
    pub labels: BTreeMap<String, String>,
}

/// One artifact: an uncompressed tar with prefix-relative paths.
#[derive(Debug, Clone)]
pub struct ArtifactLayer {
    /// Recipe name.
    pub name: String,
    /// The artifact tar.
    pub tar: Vec<u8>,
}

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout directory.
    OciDir(PathBuf),
    /// A docker-archive tar (one platform).
    DockerArchive(PathBuf),
}

impl FromStr for Output {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            Some(("oci", path)) if !path.is_empty() => Ok(Output::OciDir(path.into())),
            Some(("docker-archive", path)) if !path.is_empty() => {
                Ok(Output::DockerArchive(path.into()))
            }
            _ => Err(Error::BadOutput(text.to_owned())),
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The multi-platform index's digest (OCI layout with several platforms).
    pub index_digest: Option<oci_spec::image::Digest>,
    /// Each platform's manifest digest.
    pub manifests: Vec<(Platform, oci_spec::image::Digest)>,
    /// Layers of the first platform's image.
    pub layers: usize,
}

/// One platform's image, assembled in memory (base blobs stay on disk).
struct Assembled {
    manifest: Descriptor,
    config: Sha256,
    layers: Vec<Sha256>,
}

fn sha256_of(descriptor: &Descriptor, dir: &std::path::Path) -> Result<Sha256, Error> {
    descriptor
        .digest()
        .digest()
        .parse()
        .map_err(|_| Error::BlobMismatch {
            path: base::blob_path(dir, descriptor),
            expected: descriptor.digest().to_string(),
            found: "a digest azb can check (only sha256 is supported)".to_owned(),
        })
}

/// Folds the artifacts past the budget into one overflow layer (see the module docs).
fn budget(mut layers: Vec<(String, LayerContent)>) -> Vec<(String, LayerContent)> {
    if layers.len() <= LAYER_BUDGET {
        return layers;
    }
    let mut by_size: Vec<usize> = (0..layers.len()).collect();
    by_size.sort_by(|&a, &b| {
        layers[b]
            .1
            .size()
            .cmp(&layers[a].1.size())
            .then_with(|| layers[a].0.cmp(&layers[b].0))
    });
    let keep: std::collections::BTreeSet<usize> =
        by_size[..LAYER_BUDGET - 1].iter().copied().collect();
    let mut overflow = LayerContent::default();
    let mut kept = Vec::new();
    for (index, layer) in layers.drain(..).enumerate() {
        if keep.contains(&index) {
            kept.push(layer);
        } else {
            overflow.extend(layer.1);
        }
    }
    kept.push(("azb-overflow".to_owned(), overflow));
    kept
}

fn assemble_platform(image: &PlatformImage, blobs: &mut Blobs) -> Result<Assembled, Error> {
    let base = base::read(&image.base, image.base_ref.as_deref(), image.platform)?;
    let mut contents = image
        .artifacts
        .iter()
        .map(|a| {
            Ok((
                a.name.clone(),
                LayerContent::from_artifact(&a.name, &a.tar, image.platform, image.pg_major)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    contents = budget(contents);
    let mut labelled: Vec<(String, LayerContent)> = contents
        .into_iter()
        .map(|(n, c)| (format!("azb extension {n}"), c))
        .collect();
    labelled.push((
        "azb runtime".to_owned(),
        LayerContent::from_runtime(&image.runtime_files),
    ));
    let sealed: Vec<Blob> = labelled
        .par_iter()
        .map(|(_, content)| content.seal(image.created))
        .collect::<Result<_, _>>()
        .map_err(|e| crate::fs::FsError::new("compress a layer for", &image.base, e))?;

    let mut layer_descriptors = base.layers.clone();
    let mut layers = Vec::new();
    for descriptor in &base.layers {
        let digest = sha256_of(descriptor, &base.dir)?;
        blobs.0.insert(
            digest,
            BlobData::File(base::blob_path(&base.dir, descriptor), descriptor.size()),
        );
        layers.push(digest);
    }
    let created = rfc3339(image.created);
    let mut config = base.config.clone();
    config.set_created(Some(created.clone()));
    let mut history = config.history().clone();
    for ((label, _), blob) in labelled.iter().zip(sealed) {
        config
            .rootfs_mut()
            .diff_ids_mut()
            .push(blob.diff_id.oci_digest().to_string());
        if let Some(history) = history.as_mut() {
            let mut entry = History::default();
            entry.set_created(Some(created.clone()));
            entry.set_created_by(Some(label.clone()));
            history.push(entry);
        }
        let size = blob.bytes.len() as u64;
        let digest = blobs.add_bytes(blob.bytes);
        layer_descriptors.push(Descriptor::new(
            MediaType::ImageLayerGzip,
            size,
            digest.oci_digest(),
        ));
        layers.push(digest);
    }
    config.set_history(history);
    let mut run_config = config.config().clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = run_config.labels().clone().unwrap_or_default();
    labels.extend(image.labels.clone());
    run_config.set_labels(Some(labels));
    config.set_config(Some(run_config));

    let config_bytes = canonical_json(&config);
    let config_size = config_bytes.len() as u64;
    let config_digest = blobs.add_bytes(config_bytes);
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_size,
            config_digest.oci_digest(),
        ))
        .layers(layer_descriptors)
        .build()
        .expect("a manifest with config and layers is complete");
    let manifest_bytes = canonical_json(&manifest);
    let size = manifest_bytes.len() as u64;
    let digest = blobs.add_bytes(manifest_bytes);
    let mut descriptor = Descriptor::new(MediaType::ImageManifest, size, digest.oci_digest());
    descriptor.set_platform(Some(
        PlatformBuilder::default()
            .architecture(image.platform.oci_arch())
            .os("linux")
            .build()
            .expect("a platform with os and architecture is complete"),
    ));
    Ok(Assembled {
        manifest: descriptor,
        config: config_digest,
        layers,
    })
}

fn annotated(descriptor: &Descriptor, pairs: &[(&str, String)]) -> Descriptor {
    let mut d = descriptor.clone();
    d.set_annotations(Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    ));
    d
}

fn index_bytes(manifests: Vec<Descriptor>) -> Vec<u8> {
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("an index with manifests is complete");
    canonical_json(&index)
}

/// Assembles the request's images and writes them to `output`.
#[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
pub fn assemble(request: &ImageRequest, output: &Output) -> Result<ImageSummary, Error> {
    if matches!(output, Output::DockerArchive(_)) && request.platforms.len() != 1 {
        return Err(Error::TooManyPlatforms(request.platforms.len()));
    }
    let mut blobs = Blobs::default();
    let mut assembled = Vec::new();
    for image in &request.platforms {
        assembled.push((image.platform, assemble_platform(image, &mut blobs)?));
    }
    let manifests: Vec<(Platform, oci_spec::image::Digest)> = assembled
        .iter()
        .map(|(p, a)| (*p, a.manifest.digest().clone()))
        .collect();
    let layers = assembled.first().map_or(0, |(_, a)| a.layers.len());
    let main_tag = request
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| "latest".to_owned());
    let mut index_digest = None;
    match output {
        Output::OciDir(dir) => {
            let mut entries = Vec::new();
            let top = if let [(_, only)] = &assembled[..] {
                only.manifest.clone()
            } else {
                let nested =
                    index_bytes(assembled.iter().map(|(_, a)| a.manifest.clone()).collect());
                let size = nested.len() as u64;
                let digest = blobs.add_bytes(nested);
                index_digest = Some(digest.oci_digest());
                Descriptor::new(MediaType::ImageIndex, size, digest.oci_digest())
            };
            for tag in &request.tags {
                entries.push(annotated(&top, &[(REF_NAME, tag.clone())]));
            }
            if assembled.len() > 1 {
                for (platform, a) in &assembled {
                    entries.push(annotated(
                        &a.manifest,
                        &[(REF_NAME, format!("{main_tag}-{}", platform.oci_arch()))],
                    ));
                }
            }
            write::oci_dir(dir, &blobs, &index_bytes(entries))?;
        }
        Output::DockerArchive(file) => {
            let (_, only) = &assembled[0];
            let index = index_bytes(vec![annotated(
                &only.manifest,
                &[
                    (
                        "io.containerd.image.name",
                        format!("{}:{main_tag}", request.name),
                    ),
                    (REF_NAME, main_tag.clone()),
                ],
            )]);
            let docker_manifest = serde_json::json!([{
                "Config": format!("blobs/sha256/{}", only.config),
                "RepoTags": request.tags.iter().map(|t| format!("{}:{t}", request.name)).collect::<Vec<_>>(),
                "Layers": only.layers.iter().map(|l| format!("blobs/sha256/{l}")).collect::<Vec<_>>(),
            }]);
            let created = request.platforms[0].created;
            write::docker_archive(
                file,
                &blobs,
                &index,
                &canonical_json(&docker_manifest),
                created,
            )?;
        }
    }
    Ok(ImageSummary {
        index_digest,
        manifests,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!(
            "oci:out/x".parse::<Output>().unwrap(),
            Output::OciDir("out/x".into())
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<Output>().unwrap(),
            Output::DockerArchive("a.tar".into())
        );
        for bad in ["oci:", "tar:x", "x"] {
            assert!(bad.parse::<Output>().is_err(), "{bad}");
        }
    }

    #[test]
    fn layers_past_the_budget_fold_into_one_overflow_layer() {
        let layers: Vec<(String, LayerContent)> = (0..40)
            .map(|i| {
                let mut c = LayerContent::default();
                c.insert(&format!("f{i}"), Entry::File(vec![0; i * 10], 0o644));
                (format!("e{i:02}"), c)
            })
            .collect();
        let folded = budget(layers);
        assert_eq!(folded.len(), LAYER_BUDGET);
        assert_eq!(folded.last().unwrap().0, "azb-overflow");
        assert!(
            folded[..LAYER_BUDGET - 1]
                .iter()
                .all(|(n, _)| n.as_str() >= "e11"),
            "the largest keep their layers"
        );
        assert_eq!(
            folded.last().unwrap().1.size(),
            (0..11).map(|i| i * 10).sum::<usize>() as u64
        );
    }

    #[test]
    fn canonical_json_sorts_hash_map_keys() {
        let map: HashMap<String, u32> = (0..50).map(|i| (format!("k{i:02}"), i)).collect();
        let text = String::from_utf8(canonical_json(&map)).unwrap();
        let keys: Vec<&str> = text.split('"').filter(|s| s.starts_with('k')).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
