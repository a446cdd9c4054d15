//! Extension images: one OCI image per extension artifact with the artifact's files at the
//! image root (`lib/<ext>.so`, `share/extension/<ext>.control` and its SQL, `bin/`,
//! `licenses/<ext>/`), the layout CloudNativePG mounts as an image volume under
//! `/extensions/<ext>`. Each extension is its own OCI image layout, `DIR/<ext>/`, holding
//! one multi-platform index under its tag (always an index, also for one platform), each
//! platform's manifest as `<tag>-<arch>` (for `umoci unpack`), and the same annotations
//! on the index and every manifest (and as labels in every config).
//!
//! The image's first layer is written from the artifact's store object with every mtime at
//! the artifact's source time and no other input, so an unchanged artifact gives the same
//! layer digest on any machine. An extension whose libraries need Debian packages
//! (`runtime_packages`) gets a second layer, `system/`, with the shared libraries of those
//! packages that the PostgreSQL image's base lacks, flattened into one directory
//! (CloudNativePG's `ld_library_path: [system]`). No base, no entrypoint: it is data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfigurationBuilder, MediaType,
    Os, RootFsBuilder,
};
use rayon::prelude::*;

use super::layer::{Blob, Entry, Keep, LayerContent};
use super::oci::{self, Blobs, REF_NAME};
use super::packages::{BaseContents, RuntimePackage, package_layer};
use super::{ArtifactLayer, Error};
use crate::layer::Layout;
use crate::recipe::Platform;
use crate::runtime::rfc3339;

/// One extension's image, for every platform it was built for.
#[derive(Debug, Clone)]
pub struct ExtensionImage {
    /// The extension (recipe) name: the directory of its layout under the output.
    pub name: String,
    /// Its tag, e.g. `18-0.8.1-bookworm`.
    pub tag: String,
    /// Annotations of its index and manifests, also the labels of its configs.
    pub annotations: BTreeMap<String, String>,
    /// What it holds on each platform, in index order.
    pub platforms: Vec<ExtensionPlatform>,
}

/// One platform of an extension image.
#[derive(Debug, Clone)]
pub struct ExtensionPlatform {
    /// The platform.
    pub platform: Platform,
    /// The extension's artifact.
    pub artifact: ArtifactLayer,
    /// The Debian packages its files need at run time (with their dependencies).
    pub packages: Vec<RuntimePackage>,
    /// The PostgreSQL image's base (an OCI layout) and its ref: libraries it has stay out
    /// of `system/`. Read only when there are packages.
    pub base: PathBuf,
    /// The base's `org.opencontainers.image.ref.name`; `None` takes the first entry.
    pub base_ref: Option<String>,
}

/// What was written for one extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionSummary {
    /// The extension.
    pub name: String,
    /// The tag its index is listed under.
    pub tag: String,
    /// The multi-platform index's digest.
    pub index_digest: Digest,
    /// Each platform's manifest digest, in index order.
    pub manifests: Vec<(Platform, Digest)>,
}

/// Writes each extension's image as the OCI image layout `dir/<name>`, and returns what
/// was written, in request order.
#[tracing::instrument(level = "debug", skip_all, fields(dir = %dir.display()))]
pub fn assemble_extensions(
    images: &[ExtensionImage],
    dir: &Path,
    memo: Option<&Path>,
) -> Result<Vec<ExtensionSummary>, Error> {
    for image in images {
        if !super::valid_tag(&image.tag) {
            return Err(Error::BadTag {
                tag: image.tag.clone(),
            });
        }
        if image.platforms.is_empty() {
            return Err(Error::NoPlatforms {
                name: image.name.clone(),
            });
        }
    }
    // Compress every layer first (in parallel), then write each layout.
    let sealed = images
        .par_iter()
        .flat_map(|image| image.platforms.par_iter())
        .map(|part| seal(part, memo))
        .collect::<Result<Vec<Vec<Blob>>, Error>>()?;
    let mut sealed = sealed.into_iter();
    let mut summaries = Vec::new();
    for image in images {
        let mut blobs = Blobs::default();
        let mut manifests = Vec::new();
        for (part, layers) in image.platforms.iter().zip(sealed.by_ref()) {
            let manifest = platform_manifest(&mut blobs, image, part, layers);
            manifests.push((part.platform, manifest));
        }
        let index = blobs.add_bytes(
            MediaType::ImageIndex,
            oci::index_annotated(
                manifests.iter().map(|(_, d)| d.clone()).collect(),
                &image.annotations,
            ),
        );
        let mut entries = vec![oci::annotated(&index, &[(REF_NAME, image.tag.clone())])];
        for (platform, manifest) in &manifests {
            let name = format!("{}-{}", image.tag, platform.oci_arch());
            entries.push(oci::annotated(manifest, &[(REF_NAME, name)]));
        }
        oci::write_layout(&dir.join(&image.name), &blobs, &oci::index(entries))?;
        summaries.push(ExtensionSummary {
            name: image.name.clone(),
            tag: image.tag.clone(),
            index_digest: index.digest().clone(),
            manifests: manifests
                .into_iter()
                .map(|(p, d)| (p, d.digest().clone()))
                .collect(),
        });
    }
    Ok(summaries)
}

/// One platform's layers: the artifact's files, and `system/` when it has packages.
fn seal(part: &ExtensionPlatform, memo: Option<&Path>) -> Result<Vec<Blob>, Error> {
    let (platform, artifact) = (part.platform, &part.artifact);
    let layer = |content: LayerContent, what: &str| {
        content.seal(artifact.mtime).map_err(|source| Error::Layer {
            layer: format!("{} ({what})", artifact.name),
            platform,
            source,
        })
    };
    let (content, _) =
        LayerContent::from_artifact(artifact, platform, Layout::Root, Keep::Contents)?;
    let mut layers = vec![layer(content, "files")?];
    if let Some(system) = system_layer(part, memo)? {
        layers.push(layer(system, "system libraries")?);
    }
    Ok(layers)
}

/// The shared libraries of the packages the base lacks, as `system/<file>`; `None` when
/// there are none.
fn system_layer(
    part: &ExtensionPlatform,
    memo: Option<&Path>,
) -> Result<Option<LayerContent>, Error> {
    if part.packages.is_empty() {
        return Ok(None);
    }
    let base = super::base::read(&part.base, part.base_ref.as_deref(), part.platform)?;
    let contents = BaseContents::read_memo(&base, memo)?;
    let Some((packages, _)) = package_layer(&contents, &part.packages)? else {
        return Ok(None);
    };
    let triple = part.platform.gnu_triple();
    let linker_dirs = [format!("usr/lib/{triple}"), "usr/lib".to_owned()];
    let mut system = LayerContent::default();
    for (path, entry) in packages.entries() {
        let Some((dir, file)) = path.rsplit_once('/') else {
            continue;
        };
        let library = file.ends_with(".so") || file.contains(".so.");
        if !library || !linker_dirs.iter().any(|d| d == dir) {
            continue;
        }
        match entry {
            Entry::File(..) => system.insert(&format!("system/{file}"), entry.clone()),
            // A link within the directory stays one (libx.so.1 -> libx.so.1.2.3).
            Entry::Symlink(target) if !target.contains('/') => {
                system.insert(&format!("system/{file}"), entry.clone());
            }
            _ => {}
        }
    }
    Ok((!system.is_empty()).then_some(system))
}

/// Adds one platform's layers, config and manifest to `blobs`; returns the manifest's
/// descriptor with its platform.
fn platform_manifest(
    blobs: &mut Blobs,
    image: &ExtensionImage,
    part: &ExtensionPlatform,
    layers: Vec<Blob>,
) -> Descriptor {
    let created = rfc3339(part.artifact.mtime);
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|b| b.diff_id.oci_digest().to_string())
        .collect();
    let history = ["files", "system libraries"][..layers.len()]
        .iter()
        .map(|what| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("azb extension image {} ({what})", image.name))
                .build()
                .expect("a history entry is complete")
        })
        .collect::<Vec<_>>();
    let layers: Vec<Descriptor> = layers.into_iter().map(|b| blobs.add_layer(b)).collect();
    let labels: std::collections::HashMap<String, String> =
        image.annotations.clone().into_iter().collect();
    let config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(part.platform.oci_arch()))
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .labels(labels)
                .build()
                .expect("a config of labels is complete"),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .expect("a rootfs with type and diff_ids is complete"),
        )
        .history(history)
        .build()
        .expect("a config with architecture, os and rootfs is complete");
    let config = blobs.add_bytes(MediaType::ImageConfig, oci::canonical_json(&config));
    let manifest = blobs.add_bytes(
        MediaType::ImageManifest,
        oci::manifest_annotated(config, layers, &image.annotations),
    );
    oci::with_platform(manifest, part.platform)
}
