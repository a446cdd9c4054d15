//! Errors of the build module.

use std::path::PathBuf;

use crate::drv::DrvHash;
use crate::fs::FsError;
use crate::recipe::{Platform, RecipeName};

/// What can go wrong building a derivation.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Fetching the source failed.
    #[error("cannot fetch the source of `{name}`")]
    Fetch {
        /// The recipe.
        name: RecipeName,
        /// Why.
        #[source]
        #[diagnostic_source]
        source: crate::fetch::Error,
    },
    /// A build command could not be started.
    #[error("cannot run `{program}` for `{name}`")]
    Spawn {
        /// The recipe.
        name: RecipeName,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A build command failed; the log tail shows why.
    #[error("building `{name}` for {platform} failed at `{step}` ({status})\n{tail}")]
    #[diagnostic(help("full log: {}", log.display()))]
    Command {
        /// The recipe.
        name: RecipeName,
        /// The platform.
        platform: Platform,
        /// The step that failed.
        step: String,
        /// Exit status.
        status: String,
        /// The last lines of the log.
        tail: String,
        /// The full log in the store.
        log: PathBuf,
    },
    /// The kernel killed a process of the build for the container's memory limit.
    #[error(
        "building `{name}` for {platform} ran out of memory at `{step}`: the kernel killed a process at the builder container's limit of {limit}"
    )]
    #[diagnostic(help(
        "builds get three quarters of this machine's memory unless AZB_BUILD_MEMORY says otherwise (e.g. AZB_BUILD_MEMORY=24g); fewer --jobs leaves each build more room. Full log: {}",
        log.display()
    ))]
    OutOfMemory {
        /// The recipe.
        name: RecipeName,
        /// The platform.
        platform: Platform,
        /// The step that was running.
        step: String,
        /// The limit (docker's syntax).
        limit: String,
        /// The full log.
        log: PathBuf,
    },
    /// The package lock could not be resolved or checked against the Debian index.
    #[error("cannot pin the {platform} builders' Debian packages")]
    Lock {
        /// The platform.
        platform: Platform,
        /// Why.
        #[source]
        source: crate::fetch::Error,
    },
    /// The lock has no builder for a derivation.
    #[error(transparent)]
    LockMissing {
        /// What the lock lacks.
        problem: crate::recipe::LockProblem,
    },
    /// The Docker client could not be run.
    #[error("cannot run `{program}` (is Docker installed?)")]
    DockerMissing {
        /// The client program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A Docker command failed.
    #[error("`docker {command}` failed: {detail}")]
    Docker {
        /// The command's arguments.
        command: String,
        /// What the engine said.
        detail: String,
    },
    /// A builder image could not be made.
    #[error("cannot make the builder image `{tag}`:\n{detail}")]
    BuilderImage {
        /// Its tag.
        tag: String,
        /// Why (the tail of mmdebstrap's log, or what the image lacks).
        detail: String,
    },
    /// A tool azb runs itself could not be started.
    #[error("cannot run `{program}`")]
    Tool {
        /// The program.
        program: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The recipe's subdir is not a directory of its source.
    #[error("`{name}` builds in `{subdir}`, which is not a directory of its pinned source")]
    NoSubdir {
        /// The recipe.
        name: RecipeName,
        /// Its subdir.
        subdir: String,
    },
    /// strip failed on a file the build installed.
    #[error("cannot strip `{}` built by `{name}` ({status})", file.display())]
    Strip {
        /// The recipe.
        name: RecipeName,
        /// The file.
        file: PathBuf,
        /// Exit status.
        status: String,
    },
    /// The build installed files outside the PostgreSQL prefix.
    #[error("`{name}` installed `{path}` outside the PostgreSQL prefix")]
    OutsidePrefix {
        /// The recipe.
        name: RecipeName,
        /// The stray path (relative to DESTDIR).
        path: PathBuf,
    },
    /// The build produced an ELF file for another machine.
    #[error("`{name}` produced `{file}` for {}, but {platform} needs {}", crate::layer::elf::machine_name(*found), crate::layer::elf::machine_name(*expected))]
    WrongMachine {
        /// The recipe.
        name: RecipeName,
        /// The file, inside the artifact.
        file: String,
        /// The platform.
        platform: Platform,
        /// e_machine found.
        found: u16,
        /// e_machine expected.
        expected: u16,
    },
    /// An artifact file holds the path of the build directory.
    #[error(
        "`{file}` built by `{name}` contains the build directory's path, so it is not reproducible"
    )]
    BuildPathLeak {
        /// The recipe.
        name: RecipeName,
        /// The file, inside the artifact.
        file: String,
    },
    /// The host executor cannot run this build kind yet.
    #[error("`{name}` builds with `{kind}`, which the host executor does not support")]
    UnsupportedKind {
        /// The recipe.
        name: RecipeName,
        /// The build kind.
        kind: &'static str,
    },
    /// No usable Rust toolchain for a cargo-pgrx build.
    #[error("`{name}` builds with cargo-pgrx, but {problem}")]
    Rust {
        /// The recipe.
        name: RecipeName,
        /// What is wrong.
        problem: String,
        /// What would fix it.
        #[help]
        hint: String,
    },
    /// A build tool's version (as a recipe pins it) is not a plain version.
    #[error("`{name}` pins {tool} `{version}`, which is not a version like `0.16.1`")]
    BadToolVersion {
        /// The recipe.
        name: RecipeName,
        /// The tool.
        tool: &'static str,
        /// What the recipe says.
        version: String,
    },
    /// Installing a pinned build tool failed.
    #[error(
        "cannot install {tool} {version} (for `{name}`): `cargo install` failed ({status})\n{tail}"
    )]
    #[diagnostic(help(
        "check that {tool} {version} exists in the crate registry and that the registry is reachable, or install it ahead: AZB_TOOLS_DIR=<store>/tools scripts/fetch-pgrx.sh {version}"
    ))]
    ToolInstall {
        /// The recipe that needs it.
        name: RecipeName,
        /// The tool.
        tool: &'static str,
        /// Its version.
        version: String,
        /// Exit status (or why cargo could not start).
        status: String,
        /// The last lines of cargo's output.
        tail: String,
    },
    /// A pinned build tool is not installed where builds look for it.
    #[error("`{name}` needs {tool} {version}, which is not installed at `{}`", path.display())]
    #[diagnostic(help(
        "builds install it before they start; to install it ahead: AZB_TOOLS_DIR=<store>/tools scripts/fetch-pgrx.sh {version}"
    ))]
    ToolMissing {
        /// The recipe.
        name: RecipeName,
        /// The tool.
        tool: &'static str,
        /// Its version.
        version: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The source is not a Cargo project a cargo-pgrx build can run offline.
    #[error("`{name}` builds with cargo-pgrx, but its source has no {missing} in `{dir}`")]
    CargoProject {
        /// The recipe.
        name: RecipeName,
        /// The build directory, relative to the source root.
        dir: String,
        /// The file that is missing.
        missing: &'static str,
        /// What would fix it.
        #[help]
        hint: String,
    },
    /// Fetching the crates a source's Cargo.lock pins failed.
    #[error(
        "cannot fetch the crates `{name}`'s Cargo.lock pins: `cargo fetch --locked` failed ({status})\n{tail}"
    )]
    CrateFetch {
        /// The recipe.
        name: RecipeName,
        /// Exit status (or why cargo could not start).
        status: String,
        /// The last lines of cargo's output.
        tail: String,
    },
    /// The build installed nothing.
    #[error("`{name}` for {platform} installed nothing (see {})", log.display())]
    Empty {
        /// The recipe.
        name: RecipeName,
        /// The platform.
        platform: Platform,
        /// The full log.
        log: PathBuf,
    },
    /// The toolchain of a platform is unusable.
    #[error("the {platform} toolchain at `{prefix}` is unusable: {problem}")]
    Toolchain {
        /// The platform.
        platform: Platform,
        /// Its prefix.
        prefix: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Builds cannot be cut off from the network here.
    #[error("cannot isolate builds from the network: `unshare --net` failed ({detail})")]
    NoNetworkIsolation {
        /// What unshare said.
        detail: String,
    },
    /// A dependency of this derivation failed, so it was not attempted.
    #[error("`{name}` for {platform} was skipped: its dependency {dependency} failed")]
    DependencyFailed {
        /// The recipe.
        name: RecipeName,
        /// The platform.
        platform: Platform,
        /// The failed dependency's hash.
        dependency: DrvHash,
    },
}
