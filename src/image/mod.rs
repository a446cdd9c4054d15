//! Image assembly: per platform, the base image's layers (blobs copied byte for byte and
//! checked), one deterministic layer per extension artifact, and a runtime layer; config,
//! manifests and indexes with oci-spec types; written as an OCI image layout or as a
//! docker-archive.
//!
//! Owns layer content, OCI documents and the output files. It never builds, fetches or
//! looks anything up in the store: the caller hands over the files of each artifact (its
//! object and, when the store made one, its layer blob) and the runtime files; the other
//! things read from disk are base image layouts. Same request, same bytes, on any machine.
//!
//! Choices:
//! - Artifact paths map onto the Debian layout (the layer module's map); hard links become
//!   copies; other special files are errors. An artifact that keeps its own layer uses the
//!   store's blob as it is (the same bytes this module would write), so it is compressed
//!   once, when it enters the store, and a registry that has it can mount it.
//! - Layer budget: at most [`LAYER_BUDGET`] extension layers per platform. Past it, the
//!   `LAYER_BUDGET - 1` artifacts with the largest uncompressed tars (name breaking ties)
//!   keep their own layers, in request order, and the rest fold, in request order (a later
//!   artifact wins a shared path), into one `azb-overflow` layer after them.
//! - OCI layout `index.json`: with several platforms, a nested image index (one
//!   platform-annotated entry per manifest) is listed once per tag
//!   (`org.opencontainers.image.ref.name` = the tag), so `skopeo inspect oci:DIR:TAG`
//!   picks the host's or `--override-arch`'s platform; each platform's manifest is also
//!   listed as `<first tag>-<arch>`, because `umoci unpack --image DIR:REF` needs a ref
//!   that leads to exactly one manifest. With one platform, its manifest is listed under
//!   each tag and as `<first tag>-<arch>`, with no index blob.
//! - docker-archive: Docker's `manifest.json` plus the same image as an OCI layout whose
//!   index.json names the manifest once per tag (`io.containerd.image.name` and ref name).
//! - Every JSON document is canonical (keys sorted at every level).

mod archive;
mod base;
mod error;
mod extension;
mod layer;
mod oci;
mod packages;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, Digest, MediaType};
use rayon::prelude::*;

pub use crate::runtime::RuntimeFile;
pub use base::created as base_created;
pub use error::Error;
pub use extension::{ExtensionImage, ExtensionPlatform, ExtensionSummary, assemble_extensions};
pub use packages::RuntimePackage;

use crate::digest::Sha256;
use crate::layer::Layout;
use crate::recipe::Platform;
use base::Base;
use layer::{Blob, BlobBytes, ElfNeeds, Keep, LayerContent};
use oci::{AddedLayer, Blobs};

/// Extension layers per platform before the smallest fold into one overflow layer.
pub const LAYER_BUDGET: usize = 30;

/// The name of the layer that holds the artifacts past the budget.
pub const OVERFLOW_LAYER: &str = "azb-overflow";

/// What to assemble.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// Repository name, e.g. `azb/postgres`.
    pub name: String,
    /// Tags, e.g. `18.6-202611221530-example` and `18`; the first is the main tag.
    pub tags: Vec<String>,
    /// One image per platform.
    pub platforms: Vec<PlatformImage>,
    /// A directory where assembly keeps what it learnt of its inputs, by their digests
    /// (what a base image holds), so the next run skips reading them; `None`: none kept.
    pub memo: Option<PathBuf>,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform.
    pub platform: Platform,
    /// An OCI image layout directory holding the base image.
    pub base: PathBuf,
    /// The `org.opencontainers.image.ref.name` of the base in that layout; `None` takes
    /// the first entry for `platform`.
    pub base_ref: Option<String>,
    /// PostgreSQL major version, for the Debian layout paths (18).
    pub pg_major: u32,
    /// Extension artifacts, one layer each (within the budget), in this order.
    pub artifacts: Vec<ArtifactLayer>,
    /// Debian packages the artifacts need at run time (those the base lacks become one
    /// layer after the base's).
    pub packages: Vec<RuntimePackage>,
    /// Files of the last layer.
    pub runtime_files: Vec<RuntimeFile>,
    /// Unix seconds: the runtime layer's mtimes and the config's and history's `created`.
    pub created: i64,
    /// Labels merged over the base config's labels.
    pub labels: BTreeMap<String, String>,
    /// Run settings changed from the base's.
    pub run: RunConfig,
    /// The image's SBOM (CycloneDX JSON), attached to its manifest in an OCI layout as a
    /// referring artifact.
    pub sbom: Option<Vec<u8>>,
    /// `packages` are exactly the listed ones, not a dependency closure: every ELF file
    /// they bring must find its libraries too, as an artifact's must.
    pub packages_exact: bool,
}

/// Run settings an image changes from its base's; what is left out stays the base's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// The entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments.
    pub cmd: Option<Vec<String>>,
    /// The user.
    pub user: Option<String>,
    /// `NAME=value` entries set over the base's (same name: this one wins).
    pub env: BTreeMap<String, String>,
    /// Ports (`6432/tcp`), replacing the base's.
    pub exposed_ports: Option<Vec<String>>,
    /// The stop signal.
    pub stop_signal: Option<String>,
    /// Volumes (container paths), replacing the base's.
    pub volumes: Option<Vec<String>>,
}

/// One artifact.
#[derive(Debug, Clone)]
pub struct ArtifactLayer {
    /// Recipe name, e.g. `vector`.
    pub name: String,
    /// The store object: a zstd tar with paths relative to the PostgreSQL prefix
    /// (`lib/...`, `share/...`, `bin/...`, `include/...`, `licenses/<name>/...`).
    pub object: PathBuf,
    /// Size of the uncompressed tar (the layer budget keeps the largest).
    pub tar_size: u64,
    /// The layer the store made of it, used as is when the artifact keeps its own layer;
    /// `None`: made here from the object.
    pub layer: Option<StoredLayer>,
    /// Unix seconds for every entry of its layer: the artifact's own source time, so a
    /// layer changes only when its artifact does (not when another extension is re-pinned).
    pub mtime: i64,
}

/// A layer blob the store holds.
#[derive(Debug, Clone)]
pub struct StoredLayer {
    /// The gzip blob file.
    pub path: PathBuf,
    /// Its diff_id, digest and size.
    pub digests: crate::layer::LayerDigests,
}

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `oci:DIR`: an OCI image layout directory (created or updated).
    OciDir(PathBuf),
    /// `docker-archive:FILE`: a tar for `docker load` (one platform).
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
            _ => Err(Error::BadOutput {
                text: text.to_owned(),
            }),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The multi-platform image index's digest (an OCI layout with several platforms).
    pub index_digest: Option<Digest>,
    /// Each platform's manifest digest, in request order.
    pub manifests: Vec<(Platform, Digest)>,
    /// Layers of the first platform's image, base layers included.
    pub layers: usize,
}

/// One platform's layers, compressed, before any blob is stored.
struct Sealed<'a> {
    image: &'a PlatformImage,
    base: Base,
    layers: Vec<(AddedLayer, Blob)>,
}

/// One platform's image, its blobs in the blob set.
struct Assembled {
    platform: Platform,
    manifest: Descriptor,
    config: Sha256,
    layers: Vec<Sha256>,
}

/// A layer to write: its name (for errors), its history entry, and where it comes from.
struct Planned {
    name: String,
    created_by: String,
    source: LayerSource,
}

/// Where a layer's blob comes from.
enum LayerSource {
    /// Written here from this content, every mtime at the given time.
    Content(LayerContent, i64),
    /// The store's blob.
    Stored(StoredLayer),
}

/// Which artifacts fold into the overflow layer (see the module docs), from their
/// `(name, tar size)` in request order.
fn folded(sizes: &[(&str, u64)]) -> Vec<bool> {
    if sizes.len() <= LAYER_BUDGET {
        return vec![false; sizes.len()];
    }
    let mut by_size: Vec<usize> = (0..sizes.len()).collect();
    by_size.sort_by(|&a, &b| {
        let (a, b) = (sizes[a], sizes[b]);
        b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0))
    });
    let mut fold = vec![true; sizes.len()];
    for &index in &by_size[..LAYER_BUDGET - 1] {
        fold[index] = false;
    }
    fold
}

/// Reads the base, reads and checks the artifacts, and compresses every layer made here
/// (in parallel).
fn seal<'a>(image: &'a PlatformImage, memo: Option<&Path>) -> Result<Sealed<'a>, Error> {
    let platform = image.platform;
    let base = base::read(&image.base, image.base_ref.as_deref(), platform)?;
    let sizes: Vec<(&str, u64)> = image
        .artifacts
        .iter()
        .map(|a| (a.name.as_str(), a.tar_size))
        .collect();
    let fold = folded(&sizes);
    // An artifact whose layer is the store's is read for its paths and ELF needs only.
    let read = image
        .artifacts
        .par_iter()
        .zip(&fold)
        .map(|(a, &fold)| {
            let keep = if fold || a.layer.is_none() {
                Keep::Contents
            } else {
                Keep::Paths
            };
            LayerContent::from_artifact(a, platform, Layout::Debian(image.pg_major), keep)
        })
        .collect::<Result<Vec<(LayerContent, Vec<ElfNeeds>)>, Error>>()?;
    let contents = packages::BaseContents::read_memo(&base, memo)?;
    let package_layer = packages::package_layer(&contents, &image.packages)?;
    let package_needs = match (&package_layer, image.packages_exact) {
        (Some((content, _)), true) => content.elf_needs(),
        _ => Vec::new(),
    };
    let mut checked: Vec<(&str, &LayerContent, &[ElfNeeds])> = image
        .artifacts
        .iter()
        .zip(&read)
        .map(|(a, (content, needs))| (a.name.as_str(), content, needs.as_slice()))
        .collect();
    let empty = LayerContent::default();
    if !package_needs.is_empty() {
        checked.push(("the image's packages", &empty, &package_needs));
    }
    packages::check_linkage(
        platform,
        &contents,
        package_layer.as_ref().map(|(content, _)| content),
        &checked,
    )?;
    let mut planned = Vec::new();
    if let Some((content, added)) = package_layer {
        planned.push(Planned {
            name: "runtime packages".to_owned(),
            created_by: format!("azb runtime packages {}", added.join(" ")),
            source: LayerSource::Content(content, image.created),
        });
    }
    let (mut overflow, mut overflow_names, mut overflow_mtime) =
        (LayerContent::default(), Vec::new(), 0);
    for ((artifact, (content, _)), fold) in image.artifacts.iter().zip(read).zip(fold) {
        if fold {
            overflow_names.push(artifact.name.as_str());
            overflow.extend(content);
            overflow_mtime = overflow_mtime.max(artifact.mtime);
            continue;
        }
        planned.push(Planned {
            name: artifact.name.clone(),
            created_by: format!("azb extension {}", artifact.name),
            source: match &artifact.layer {
                Some(stored) => LayerSource::Stored(stored.clone()),
                None => LayerSource::Content(content, artifact.mtime),
            },
        });
    }
    if !overflow_names.is_empty() {
        planned.push(Planned {
            name: OVERFLOW_LAYER.to_owned(),
            created_by: format!(
                "azb extensions {} ({OVERFLOW_LAYER})",
                overflow_names.join(", ")
            ),
            source: LayerSource::Content(overflow, overflow_mtime),
        });
    }
    planned.push(Planned {
        name: "runtime".to_owned(),
        created_by: "azb runtime".to_owned(),
        source: LayerSource::Content(
            LayerContent::from_runtime(&image.runtime_files)?,
            image.created,
        ),
    });
    let layers = planned
        .into_par_iter()
        .map(|p| {
            let blob = match p.source {
                LayerSource::Content(content, mtime) => {
                    content.seal(mtime).map_err(|source| Error::Layer {
                        layer: p.name,
                        platform,
                        source,
                    })?
                }
                LayerSource::Stored(stored) => Blob {
                    bytes: BlobBytes::File(stored.path),
                    digest: stored.digests.digest,
                    diff_id: stored.digests.diff_id,
                    size: stored.digests.size,
                },
            };
            let added = AddedLayer {
                created_by: p.created_by,
                diff_id: blob.diff_id,
            };
            Ok((added, blob))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Sealed {
        image,
        base,
        layers,
    })
}

/// Puts one platform's blobs, config and manifest into `blobs`.
fn store(sealed: Sealed<'_>, blobs: &mut Blobs) -> Result<Assembled, Error> {
    let Sealed {
        image,
        base,
        layers,
    } = sealed;
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for descriptor in &base.layers {
        let digest = base::sha256_of(&base.dir, descriptor.digest())?;
        blobs.add_file(
            digest,
            base::blob_path(&base.dir, &digest),
            descriptor.size(),
        );
        descriptors.push(descriptor.clone());
        digests.push(digest);
    }
    let (added, compressed): (Vec<AddedLayer>, Vec<Blob>) = layers.into_iter().unzip();
    for blob in compressed {
        digests.push(blob.digest);
        descriptors.push(blobs.add_layer(blob));
    }
    let config = oci::config(
        &base.config,
        base.layers.len(),
        &added,
        image.created,
        &image.labels,
        &image.run,
    );
    let config_json = oci::canonical_json(&config);
    let config_digest = Sha256::of(&config_json);
    let config = blobs.add_bytes(MediaType::ImageConfig, config_json);
    let manifest = blobs.add_bytes(MediaType::ImageManifest, oci::manifest(config, descriptors));
    tracing::debug!(platform = %image.platform, manifest = %manifest.digest(), layers = digests.len(), "assembled");
    Ok(Assembled {
        platform: image.platform,
        manifest: oci::with_platform(manifest, image.platform),
        config: config_digest,
        layers: digests,
    })
}

/// Whether `tag` is a valid Docker/OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// Checks what can be checked before any work.
fn check(request: &ImageRequest, output: &Output) -> Result<(), Error> {
    if request.platforms.is_empty() {
        return Err(Error::NoPlatforms {
            name: request.name.clone(),
        });
    }
    if request.tags.is_empty() {
        return Err(Error::NoTags {
            name: request.name.clone(),
        });
    }
    if let Some(tag) = request.tags.iter().find(|t| !valid_tag(t)) {
        return Err(Error::BadTag { tag: tag.clone() });
    }
    if matches!(output, Output::DockerArchive(_)) && request.platforms.len() != 1 {
        return Err(Error::TooManyPlatforms {
            count: request.platforms.len(),
        });
    }
    Ok(())
}

/// Learns what the base image at `base` holds (every path, its packages, its linker
/// configuration) into `memo`, where assembly looks first. It is the slowest part of a
/// first assembly (every layer of the base decompressed and hashed), and depends on no
/// build, so a build runs it beside its compiles.
pub fn learn_base(
    base: &Path,
    base_ref: Option<&str>,
    platform: Platform,
    memo: &Path,
) -> Result<(), Error> {
    let base = base::read(base, base_ref, platform)?;
    packages::BaseContents::read_memo(&base, Some(memo)).map(drop)
}

/// Assembles the request's images and writes them to `output`.
#[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
pub fn assemble(request: &ImageRequest, output: &Output) -> Result<ImageSummary, Error> {
    check(request, output)?;
    let sealed = request
        .platforms
        .par_iter()
        .map(|image| seal(image, request.memo.as_deref()))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut blobs = Blobs::default();
    let assembled = sealed
        .into_iter()
        .map(|s| store(s, &mut blobs))
        .collect::<Result<Vec<_>, Error>>()?;
    let manifests: Vec<(Platform, Descriptor)> = assembled
        .iter()
        .map(|a| (a.platform, a.manifest.clone()))
        .collect();
    let mut index_digest = None;
    match output {
        Output::OciDir(dir) => {
            let sboms: Vec<Option<Vec<u8>>> =
                request.platforms.iter().map(|p| p.sbom.clone()).collect();
            let (digest, index_json) =
                oci::layout_index(&mut blobs, &request.tags, &manifests, &sboms);
            oci::write_layout(dir, &blobs, &index_json)?;
            index_digest = digest;
        }
        Output::DockerArchive(file) => {
            let only = &assembled[0];
            let image = archive::ArchiveImage {
                name: &request.name,
                tags: &request.tags,
                manifest: &only.manifest,
                config: only.config,
                layers: &only.layers,
            };
            archive::write(file, &blobs, &image, request.platforms[0].created)?;
        }
    }
    Ok(ImageSummary {
        index_digest,
        manifests: manifests
            .into_iter()
            .map(|(p, d)| (p, d.digest().clone()))
            .collect(),
        layers: assembled[0].layers.len(),
    })
}
