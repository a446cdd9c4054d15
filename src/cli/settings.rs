//! Turning arguments and environment into plain settings, and loading what every command
//! needs: the project, its graph, the toolchains' identities and the plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Failure;
use super::args::{GlobalArgs, PlatformArg};
use crate::build::HostToolchain;
use crate::drv::{Builders, Plan};
use crate::fetch::{Fetcher, SourceMirrors};
use crate::graph::Graph;
use crate::recipe::{Lock, Platform, Project};
use crate::remote::{CacheConfig, Remote};
use crate::store::Store;

/// Settings every command shares, resolved.
#[derive(Debug, Clone)]
pub struct GlobalSettings {
    /// Project root.
    pub project: PathBuf,
    /// Image definition file.
    pub image: PathBuf,
    /// Store directory.
    pub cache_dir: PathBuf,
    /// No progress output.
    pub quiet: bool,
    /// Overlays applied after the image definition's.
    pub overlays: Vec<PathBuf>,
    /// Limits of builder containers (`AZB_BUILD_MEMORY`, `AZB_KEEP_WARM`).
    pub limits: crate::build::Limits,
}

impl GlobalSettings {
    /// Resolves the global arguments against the environment.
    pub fn resolve(args: &GlobalArgs) -> Result<Self, Failure> {
        let project = match &args.project {
            Some(dir) => dir.clone(),
            None => find_project().ok_or_else(|| {
                Failure::input(miette::miette!(
                    help = "run azb inside a project or pass --project DIR",
                    "no azb project (a directory holding recipes/ and stacks/) here or above"
                ))
            })?,
        };
        let image = args
            .image
            .clone()
            .unwrap_or_else(|| project.join("stacks/image.ron"));
        let cache_dir = args
            .cache_dir
            .clone()
            .or_else(|| crate::env::path(crate::env::CACHE_DIR))
            .unwrap_or_else(|| project.join("cache"));
        // Read again where a lock is taken; a bad value stops here, before any work.
        crate::env::seconds(crate::env::LOCK_TIMEOUT).map_err(|message| {
            Failure::input(miette::miette!(
                help = "unset it to wait as long as another azb holds a lock",
                "{message}"
            ))
        })?;
        let limits = crate::build::Limits::from_env().map_err(|message| {
            Failure::input(miette::miette!(
                help = "unset it for the default (AZB_BUILD_MEMORY: three quarters of this machine's memory; AZB_KEEP_WARM: 600)",
                "{message}"
            ))
        })?;
        Ok(Self {
            project,
            image,
            cache_dir,
            quiet: args.quiet,
            overlays: args.overlay.clone(),
            limits,
        })
    }

    /// Opens the store.
    pub fn store(&self) -> Result<Store, Failure> {
        Store::open(&self.cache_dir).map_err(Failure::environment)
    }

    /// The remote cache settings: the project's `cache.ron`, lists replaced by
    /// `AZB_SUBSTITUTERS` and `AZB_TRUSTED_KEYS`.
    pub fn cache_config(&self) -> Result<CacheConfig, Failure> {
        let config = CacheConfig::load(&self.project.join("cache.ron")).map_err(|e| match e {
            crate::remote::Error::Fs(_) => Failure::environment(e),
            other => Failure::input(other),
        })?;
        Ok(config.with_env(
            crate::env::string(crate::env::SUBSTITUTERS),
            crate::env::string(crate::env::TRUSTED_KEYS),
        ))
    }

    /// The configured substituters, opened (no network yet).
    pub fn remote(&self) -> Result<Remote, Failure> {
        Remote::from_config(&self.cache_config()?).map_err(|e| match e {
            crate::remote::Error::BadUrl { .. } | crate::remote::Error::BadKey { .. } => {
                Failure::input(e)
            }
            other => Failure::environment(other),
        })
    }

    /// A fetcher for `store` with the source overrides, showing its progress on stderr.
    pub fn fetcher(&self, store: &Store) -> Result<Fetcher, Failure> {
        Ok(Fetcher::new(store.clone(), self.mirrors()?)
            .observed(super::progress::FetchProgress::new(self.quiet)))
    }

    /// Source overrides from `AZB_SOURCE_MIRRORS`.
    pub fn mirrors(&self) -> Result<SourceMirrors, Failure> {
        let text = crate::env::string(crate::env::SOURCE_MIRRORS).unwrap_or_default();
        SourceMirrors::parse(&text).map_err(|e| {
            Failure::input(
                miette::Report::new(e).wrap_err(format!("in {}", crate::env::SOURCE_MIRRORS)),
            )
        })
    }
}

fn find_project() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .find(|d| d.join("recipes").is_dir() && d.join("stacks").is_dir())
        .map(Path::to_owned)
}

/// The platforms a `--platform` argument selects from the image definition.
pub fn platforms(arg: PlatformArg, project: &Project) -> Result<Vec<Platform>, Failure> {
    let defined: Vec<Platform> = project.image.platforms.keys().copied().collect();
    let wanted = match arg {
        PlatformArg::All => return Ok(defined),
        PlatformArg::Amd64 => Platform::Amd64,
        PlatformArg::Arm64 => Platform::Arm64,
    };
    if defined.contains(&wanted) {
        Ok(vec![wanted])
    } else {
        Err(Failure::input(miette::miette!(
            help = format!(
                "add \"{wanted}\" to platforms in {}",
                project.image_file.name
            ),
            "the image definition has no platform {wanted}"
        )))
    }
}

/// Where one platform builds, resolved from the image definition.
#[derive(Debug, Clone)]
pub enum Environment {
    /// The host executor with this toolchain and its identity.
    Host(HostToolchain, crate::drv::BuilderId),
    /// Builder containers carrying the toolchain at this path (checked against the lock
    /// when a builder image is made).
    Docker {
        /// The PostgreSQL toolchain of the platform.
        prefix: PathBuf,
    },
}

/// Each platform's build environment.
pub type Environments = BTreeMap<Platform, Environment>;

/// The build environments of `platforms` and the plan of `graph` they give.
pub fn plan<'a>(
    project: &'a Project,
    graph: &Graph<'a>,
    platforms: &[Platform],
) -> Result<(Environments, Plan<'a>), Failure> {
    let environments = environments(project, platforms)?;
    let mut builders = BTreeMap::new();
    for (platform, environment) in &environments {
        let source = match environment {
            Environment::Host(_, identity) => Builders::Host(identity.clone()),
            Environment::Docker { .. } => Builders::Locked(lock(project)?),
        };
        builders.insert(*platform, source);
    }
    let rust = crate::build::rust_identity_for(graph).map_err(Failure::environment)?;
    let plan = Plan::new(graph, &project.image, platforms, &builders, rust.as_deref()).map_err(
        |e| {
            Failure::input(miette::Report::new(e).wrap_err(
                "the package lock does not cover this plan; run `azb lock update` and commit builders.lock",
            ))
        },
    )?;
    Ok((environments, plan))
}

/// The project's package lock, which builder containers need.
pub fn lock(project: &Project) -> Result<&Lock, Failure> {
    project.lock.as_ref().ok_or_else(|| {
        Failure::input(miette::miette!(
            help = "run `azb lock update` to resolve the builders' Debian packages, and commit the file",
            "no {} in {}: builder containers are pinned by it",
            crate::recipe::LOCK_FILE,
            project.root.display()
        ))
    })
}

/// Each platform's build environment; a host toolchain's identity is computed here.
fn environments(project: &Project, platforms: &[Platform]) -> Result<Environments, Failure> {
    let mut out = BTreeMap::new();
    for &platform in platforms {
        let def = &project.image.platforms[&platform];
        let environment = match HostToolchain::from_def(platform, &def.toolchain, &project.root) {
            Some(toolchain) => {
                let identity = toolchain.identity().map_err(Failure::environment)?;
                let identity = crate::drv::BuilderId::new(identity)
                    .expect("a toolchain identity is a hash, never empty");
                Environment::Host(toolchain, identity)
            }
            None => Environment::Docker {
                prefix: project.path(&def.toolchain.prefix(project.image.pg_major, platform)),
            },
        };
        out.insert(platform, environment);
    }
    Ok(out)
}

/// Loads the project named by the settings.
pub fn load_project(settings: &GlobalSettings) -> Result<Project, Failure> {
    Project::load(&settings.project, &settings.image, &settings.overlays).map_err(project_failure)
}

/// A project that cannot be read is the environment's problem; one that breaks a rule is
/// the user's.
pub fn project_failure(e: crate::recipe::Error) -> Failure {
    match e {
        crate::recipe::Error::Read(_) => Failure::environment(e),
        other => Failure::input(other),
    }
}
