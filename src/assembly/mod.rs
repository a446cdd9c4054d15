//! What goes into an image, from a finished build: for the PostgreSQL image, each
//! artifact's stored object and layer, the runtime files (version-info, SBOM, entrypoint,
//! smoke test, init scripts), the runtime packages, tags and labels; for a companion image
//! (PgBouncer, the exporter), its packages, files and run settings. The result is an
//! [`ImageRequest`] for the image module.
//!
//! Owns the rules that join a build to an image (which base, which packages, which files,
//! which tags). Never builds, never writes an image, and reads the store only through its
//! paths and objects; fetching is the fetch and remote modules' (Debian packages, a
//! registry base).

mod companion;

use std::path::PathBuf;

use crate::build::Outcome;
use crate::drv::Plan;
use crate::fetch::{DebianIndex, RuntimePackage};
use crate::graph::Graph;
use crate::image::{ArtifactLayer, ImageRequest, PlatformImage, RunConfig, StoredLayer};
use crate::recipe::{BaseImage, LockProblem, Platform, Project, Recipe};
use crate::runtime::{self, BuiltComponent, ImageBuild, VersionInfo};
use crate::store::Store;

/// What can go wrong choosing an image's contents.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// The project has no builders.lock, which pins the image's packages.
    #[error("{image} carries Debian packages, but the project has no builders.lock")]
    #[diagnostic(help("run `azb lock update` and commit builders.lock"))]
    NoLock {
        /// The image's name.
        image: String,
    },
    /// The lock does not pin a package the image needs.
    #[error(transparent)]
    #[diagnostic(help("run `azb lock update` and commit builders.lock"))]
    Lock(#[from] LockProblem),
    /// A stored object could not be read.
    #[error("cannot read the stored object of `{name}`")]
    Object {
        /// The recipe.
        name: String,
        /// Why.
        #[source]
        source: crate::fs::FsError,
    },
    /// A file the image carries could not be read.
    #[error("cannot read `{path}`, which the image carries")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A Debian package could not be fetched or unpacked.
    #[error(transparent)]
    Debian(#[from] crate::fetch::Error),
    /// The registry base could not be pulled.
    #[error(transparent)]
    Base(#[from] crate::remote::Error),
    /// The base image could not be read.
    #[error(transparent)]
    Image(#[from] crate::image::Error),
}

impl Error {
    /// Whether the project's files are at fault (rather than the machine or the network).
    pub fn is_input(&self) -> bool {
        matches!(self, Error::NoLock { .. } | Error::Lock(_))
    }
}

/// The request for `project`'s image on `platforms`, from the build that realised `plan`.
pub fn image_request(
    store: &Store,
    project: &Project,
    graph: &Graph<'_>,
    plan: &Plan<'_>,
    outcome: &Outcome,
    platforms: &[Platform],
) -> Result<ImageRequest, Error> {
    if let Some(def) = &project.image.companion {
        return companion::request(store, project, def, platforms);
    }
    // Init SQL covers builtins too, which have no derivation.
    let recipes: Vec<&Recipe> = graph.order.iter().map(|r| &r.recipe).collect();
    let mut images = Vec::new();
    let mut created_all = 0;
    for &platform in platforms {
        let parts: Vec<_> = plan
            .for_platform(platform)
            .map(|p| (&p.recipe.recipe, &outcome.artifacts[&p.hash]))
            .collect();
        let created = runtime::created(&parts);
        created_all = created_all.max(created);
        let info = VersionInfo::new(&project.image, platform, created, &parts);
        let built = ImageBuild {
            platform,
            created,
            tag: runtime::tags(&project.image, created)[0].clone(),
            components: plan
                .for_platform(platform)
                .map(|p| {
                    let record = &outcome.artifacts[&p.hash];
                    let name = p.drv.name.to_string();
                    let object = store.object_path(record);
                    let tar =
                        crate::store::read_object(&object).map_err(|source| Error::Object {
                            name: name.clone(),
                            source,
                        })?;
                    let component = BuiltComponent {
                        derivation: p.hash.to_string(),
                        object: record.object.to_string(),
                        license: runtime::artifact_license(&name, tar),
                    };
                    Ok((name, component))
                })
                .collect::<Result<_, Error>>()?,
        };
        let (base, base_ref) = base(store, project, platform)?;
        let names: Vec<String> = recipes
            .iter()
            .flat_map(|r| r.runtime_packages.iter().cloned())
            .collect();
        let packages = packages(store, project, &names, platform, false)?;
        images.push(PlatformImage {
            packages,
            packages_exact: false,
            platform,
            base,
            base_ref,
            pg_major: project.image.pg_major,
            artifacts: plan
                .for_platform(platform)
                .map(|p| {
                    let record = &outcome.artifacts[&p.hash];
                    ArtifactLayer {
                        name: p.drv.name.to_string(),
                        object: store.object_path(record),
                        tar_size: record.tar_size,
                        layer: Some(StoredLayer {
                            path: store.layer_path(record),
                            digests: record.layer,
                        }),
                        mtime: record.source_time,
                    }
                })
                .collect(),
            runtime_files: [
                info.files(),
                vec![
                    runtime::entrypoint_file(),
                    runtime::sbom_file(&project.image, &recipes, &built),
                    runtime::smoke_file(&recipes),
                ],
                runtime::init_files(&recipes),
            ]
            .concat(),
            created,
            labels: runtime::labels(&project.image, created),
            run: RunConfig {
                entrypoint: Some(vec![runtime::ENTRYPOINT_PATH.to_owned()]),
                ..RunConfig::default()
            },
        });
    }
    Ok(ImageRequest {
        name: project.image.name.clone(),
        tags: runtime::tags(&project.image, created_all),
        platforms: images,
    })
}

/// The base image layout of `platform` and the ref to use in it; a registry base is
/// pulled into the store once.
fn base(
    store: &Store,
    project: &Project,
    platform: Platform,
) -> Result<(PathBuf, Option<String>), Error> {
    Ok(match &project.image.platforms[&platform].base {
        BaseImage::OciLayout { path, reference } => (project.path(path), reference.clone()),
        BaseImage::Registry { reference } => {
            let (name, digest) =
                BaseImage::pinned(reference).expect("checked when the image definition was loaded");
            let dest = store.layout().base(digest);
            if !dest.join("index.json").is_file() {
                crate::remote::pull_base(name, digest, &dest)?;
            }
            (dest, Some("base".to_owned()))
        }
    })
}

/// The Debian packages `names` on `platform`, as builders.lock pins them (with their
/// dependencies, or `exact`ly these), fetched into the store and unpacked.
fn packages(
    store: &Store,
    project: &Project,
    names: &[String],
    platform: Platform,
    exact: bool,
) -> Result<Vec<RuntimePackage>, Error> {
    let mut names = names.to_vec();
    if !exact {
        names.sort();
        names.dedup();
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let lock = lock(project)?;
    let locked = if exact {
        lock.exact_packages(platform, &names)?
    } else {
        lock.runtime_packages(platform, &names)?
    };
    Ok(DebianIndex::from_env()?.runtime_packages(store, &locked)?)
}

/// The project's builders.lock, which pins every package an image carries.
fn lock(project: &Project) -> Result<&crate::recipe::Lock, Error> {
    project.lock.as_ref().ok_or_else(|| Error::NoLock {
        image: project.image.name.clone(),
    })
}
