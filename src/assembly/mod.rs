//! What goes into an image, from a finished build: for the PostgreSQL image, each
//! artifact's stored object and layer, the runtime files (version-info, SBOM, entrypoint,
//! smoke test, init scripts), the runtime packages, tags and labels; for a companion image
//! (PgBouncer, the exporter), its packages, files and run settings. The result is an
//! [`ImageRequest`] for the image module; for extension images, one
//! [`crate::image::ExtensionImage`] per extension.
//!
//! Owns the rules that join a build to an image (which base, which packages, which files,
//! which tags). Never builds, never writes an image, and reads the store only through its
//! paths and objects; fetching is the fetch and remote modules' (Debian packages, a
//! registry base).

mod companion;
mod extensions;

pub use extensions::extension_images;

use std::collections::{BTreeMap, BTreeSet};
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
    // Read once: a git status walks the whole checkout.
    let checkout = checkout(&project.root);
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
                        derivation: p.hash,
                        object: record.object,
                        license: runtime::artifact_license(&name, tar),
                    };
                    Ok((p.drv.name.clone(), component))
                })
                .collect::<Result<_, Error>>()?,
        };
        let (base, base_ref) = base(store, project, platform)?;
        let sbom = runtime::sbom_file(&project.image, &recipes, &built);
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
                .map(|p| artifact_layer(store, &outcome.artifacts[&p.hash], true))
                .collect(),
            runtime_files: [
                info.files(),
                vec![
                    runtime::entrypoint_file(),
                    sbom.clone(),
                    runtime::smoke_file(&recipes),
                ],
                runtime::init_files(&recipes),
            ]
            .concat(),
            sbom: Some(sbom.contents),
            created,
            labels: runtime::labels(&project.image, created)
                .into_iter()
                .chain(provenance_labels(checkout.as_ref(), &recipes, &built))
                .collect(),
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
        memo: Some(store.layout().memo()),
    })
}

/// The stored artifact of `record` for the image module, with the store's layer blob when
/// `stored_layer` (the PostgreSQL image's Debian layout), else to be laid out anew.
fn artifact_layer(
    store: &Store,
    record: &crate::store::Realisation,
    stored_layer: bool,
) -> ArtifactLayer {
    ArtifactLayer {
        name: record.name.to_string(),
        object: store.object_path(record),
        tar_size: record.tar_size,
        layer: stored_layer.then(|| StoredLayer {
            path: store.layer_path(record),
            digests: record.layer,
        }),
        mtime: record.source_time,
    }
}

/// Gets ready what assembling the image for `platforms` needs of its bases and no build
/// changes: a registry base pulled into the store, and what each base holds learnt into
/// the store's memo. A build runs it while it compiles; assembly then finds both.
pub fn prepare_bases(
    store: &Store,
    project: &Project,
    platforms: &[Platform],
) -> Result<(), Error> {
    for &platform in platforms {
        let (dir, reference) = base(store, project, platform)?;
        crate::image::learn_base(&dir, reference.as_deref(), platform, &store.layout().memo())?;
    }
    Ok(())
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

/// The OCI labels that say where the image comes from: `licenses` (PostgreSQL's and every
/// recipe's, as the SBOM has them), and, when the project is a git checkout with no
/// uncommitted change to a tracked file, `revision` (its HEAD) and `source` (its `origin`
/// remote, without credentials).
fn provenance_labels(
    checkout: Option<&(String, Option<String>)>,
    recipes: &[&Recipe],
    built: &ImageBuild,
) -> BTreeMap<String, String> {
    let mut licenses: BTreeSet<String> = recipes
        .iter()
        .filter_map(|r| {
            r.license.clone().or_else(|| {
                built
                    .components
                    .get(r.name.as_str())
                    .and_then(|c| c.license.clone())
            })
        })
        .map(|l| if l.contains(' ') { format!("({l})") } else { l })
        .collect();
    licenses.remove("PostgreSQL");
    let expression = std::iter::once("PostgreSQL".to_owned())
        .chain(licenses)
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut labels = BTreeMap::from([("org.opencontainers.image.licenses".to_owned(), expression)]);
    if let Some((revision, source)) = checkout {
        labels.insert(
            "org.opencontainers.image.revision".to_owned(),
            revision.clone(),
        );
        if let Some(source) = source {
            labels.insert("org.opencontainers.image.source".to_owned(), source.clone());
        }
    }
    labels
}

/// The HEAD commit of the git checkout at `root` and its `origin` URL (credentials
/// removed), when no tracked file has an uncommitted change; `None` outside a checkout,
/// with no commit, or without the `git` program.
///
/// Asks `git status` (one process, about 5 ms) rather than libgit2: libgit2's start-up
/// parses every CA certificate of the system (about 25 ms here), which a build that
/// fetches nothing should not pay.
fn checkout(root: &std::path::Path) -> Option<(String, Option<String>)> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let status = git(&[
        "status",
        "--porcelain=v2",
        "--branch",
        "--untracked-files=no",
    ])?;
    let mut head = None;
    for line in status.lines() {
        match line.strip_prefix("# branch.oid ") {
            Some(oid) => head = Some(oid.to_owned()),
            // A changed tracked file: not the commit.
            None if !line.starts_with('#') => return None,
            None => {}
        }
    }
    let head = head.filter(|oid| oid.len() == 40 && oid.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let source = git(&["config", "--get", "remote.origin.url"])
        .map(|url| without_credentials(url.trim()))
        .filter(|url| !url.is_empty());
    Some((head, source))
}

/// A URL without its `user:password@` part.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}/{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_label() {
        assert_eq!(
            without_credentials("https://user:secret@git.example/org/repo.git"),
            "https://git.example/org/repo.git"
        );
        assert_eq!(
            without_credentials("https://git.example/org/repo"),
            "https://git.example/org/repo"
        );
    }
}
