//! Builder images: what azb's builder containers are made of and how they are made. The
//! packages come from the package lock (`builders.lock`): a base every recipe shares
//! (compilers, build tools; for arm64 the aarch64 cross compiler and the arm64 C library
//! through Debian multiarch) plus, per distinct `build_packages` set, what that set adds
//! (for arm64 the `:arm64` variants of its libraries, so no amd64 header reaches an arm64
//! build). An image is made with mmdebstrap from exactly the locked versions plus the
//! platform's PostgreSQL toolchain, imported into the Docker engine (never pulled) under a
//! tag named by its builder identity, checked against the lock, and made only when a
//! derivation that needs it must be built; the next run finds the tag and costs nothing.
//!
//! Owns the builders' package policy, lock resolution and image making. Never runs a build
//! step (docker.rs does) and never decides a derivation.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;
use super::rust::{GUEST_SYSROOT, rust_for, rust_identity, rust_target};
use crate::fetch::DebianIndex;
use crate::fs::{FsError, LockFile, err};
use crate::recipe::{
    LOCK_VERSION, Lock, LockedBuilders, LockedPackage, Platform, PlatformLock, RecipeName, set_key,
};
use crate::store::Store;

/// The Debian release builders are made from.
pub const DISTRIBUTION: &str = "bookworm";

/// Where the toolchain lives in a builder (Debian's place for PostgreSQL 18).
pub fn guest_prefix(pg_major: u32) -> String {
    format!("/usr/lib/postgresql/{pg_major}")
}

/// The unprivileged user builds run as.
pub const BUILD_UID: u32 = 1000;

/// Tools every builder has (the host architecture's): compilers, the build systems of
/// the kinds azb knows, and ccache for the compile cache (docker.rs).
const BASE_TOOLS: &[&str] = &[
    "build-essential",
    "ccache",
    "pkg-config",
    "cmake",
    "meson",
    "ninja-build",
    "autoconf",
    "automake",
    "libtool",
    "flex",
    "bison",
    "perl",
    "python3",
    "file",
    "mawk",
    "usr-is-merged",
];

/// Headers PostgreSQL's own server headers include (libpq-be.h: OpenSSL and GSSAPI), so
/// every builder has them, for its target: the PostgreSQL toolchain was built with both.
const SERVER_HEADER_DEPS: &[&str] = &["libssl-dev", "libkrb5-dev"];

/// What the arm64 cross builder adds to the tools: the aarch64 compilers and the arm64 C
/// library (multiarch), whose headers are the only ones the cross compiler sees.
const ARM64_CROSS: &[&str] = &[
    "gcc-aarch64-linux-gnu",
    "g++-aarch64-linux-gnu",
    "binutils-aarch64-linux-gnu",
    "libc6-dev:arm64",
];

/// What apt is asked for to make the base builder of `platform`: the essential set, the
/// tools (and, for arm64, the cross compilers) and the headers PostgreSQL's need.
pub fn base_wanted(native: &str, platform: Platform) -> Vec<String> {
    let mut wanted = vec![format!("?and(?essential,?architecture({native}))")];
    wanted.extend(BASE_TOOLS.iter().map(|s| (*s).to_owned()));
    if platform != native_platform(native) {
        wanted.extend(ARM64_CROSS.iter().map(|s| (*s).to_owned()));
    }
    let headers: Vec<String> = SERVER_HEADER_DEPS.iter().map(|s| (*s).to_owned()).collect();
    wanted.extend(set_wanted(native, platform, &headers));
    wanted
}

/// The packages apt is asked for on top of the base for a `build_packages` set: for a
/// cross builder, development packages (`*-dev`: headers and libraries) are the target's
/// (`name:arm64`); tools, and what they run (perl modules), stay the builder's own.
pub fn set_wanted(native: &str, platform: Platform, set: &[String]) -> Vec<String> {
    let cross = platform != native_platform(native);
    set.iter()
        .map(|name| {
            if cross && name.ends_with("-dev") && !name.contains(':') {
                format!("{name}:{}", platform.oci_arch())
            } else {
                name.clone()
            }
        })
        .collect()
}

fn native_platform(native: &str) -> Platform {
    native.parse().unwrap_or(Platform::Amd64)
}

/// The identity of a PostgreSQL toolchain: blake3 of its pg_config.h and Makefile.global
/// (which carry PostgreSQL's version and build flags), as the lock records it.
pub fn toolchain_hash(prefix: &Path) -> Result<String, FsError> {
    let mut hasher = blake3::Hasher::new();
    for relative in ["include/server/pg_config.h", "lib/pgxs/src/Makefile.global"] {
        let path = prefix.join(relative);
        let bytes = err::read(&path).map_err(|e| FsError::new("read", &path, e))?;
        hasher.update(relative.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Resolves the lock for `platforms`: each platform's base, what each of its
/// `build_packages` sets adds, and each runtime package with its dependencies, against the
/// Debian index. `toolchains` names each platform's PostgreSQL toolchain.
pub fn resolve_lock(
    index: &DebianIndex,
    sets: &BTreeSet<Vec<String>>,
    emulated_sets: &BTreeSet<Vec<String>>,
    runtime: &BTreeSet<String>,
    toolchains: &BTreeMap<Platform, PathBuf>,
) -> Result<Lock, Error> {
    let mut lock = Lock {
        version: LOCK_VERSION,
        distribution: DISTRIBUTION.to_owned(),
        platforms: BTreeMap::new(),
    };
    for (&platform, prefix) in toolchains {
        let resolve = |wanted: &[String]| {
            index
                .resolve(wanted)
                .map_err(|source| Error::Lock { platform, source })
        };
        let base_wanted = base_wanted(&index.native, platform);
        let base = resolve(&base_wanted)?;
        let mut locked = PlatformLock {
            toolchain: toolchain_hash(prefix).map_err(|e| Error::Toolchain {
                platform,
                prefix: prefix.clone(),
                problem: format!("{e} (run scripts/fetch-toolchain.sh)"),
            })?,
            base,
            sets: BTreeMap::new(),
            runtime: BTreeMap::new(),
            emulated: None,
        };
        for set in sets.iter().filter(|s| !s.is_empty()) {
            let mut wanted = base_wanted.clone();
            wanted.extend(set_wanted(&index.native, platform, set));
            let all = resolve(&wanted)?;
            let extra: Vec<LockedPackage> = all
                .into_iter()
                .filter(|p| !locked.base.contains(p))
                .collect();
            locked.sets.insert(set_key(set), extra);
        }
        let foreign = platform.oci_arch() != index.native;
        if foreign && !emulated_sets.is_empty() {
            locked.emulated = Some(resolve_emulated(index, platform, emulated_sets)?);
        }
        for name in runtime {
            // As the image's own system would: its architecture is the native one.
            let closure = index
                .resolve_as(platform.oci_arch(), std::slice::from_ref(name))
                .map_err(|source| Error::Lock { platform, source })?;
            locked.runtime.insert(name.clone(), closure);
        }
        lock.platforms.insert(platform, locked);
    }
    Ok(lock)
}

/// The emulated builders of `platform`: its own architecture's packages (base and
/// `sets`), resolved as that system would.
fn resolve_emulated(
    index: &DebianIndex,
    platform: Platform,
    sets: &BTreeSet<Vec<String>>,
) -> Result<LockedBuilders, Error> {
    let arch = platform.oci_arch();
    let resolve = |wanted: &[String]| {
        index
            .resolve_as(arch, wanted)
            .map_err(|source| Error::Lock { platform, source })
    };
    let base_wanted = base_wanted(arch, platform);
    let mut builders = LockedBuilders {
        base: resolve(&base_wanted)?,
        sets: BTreeMap::new(),
    };
    for set in sets.iter().filter(|s| !s.is_empty()) {
        let wanted = [base_wanted.clone(), set.clone()].concat();
        let extra = resolve(&wanted)?
            .into_iter()
            .filter(|p| !builders.base.contains(p))
            .collect();
        builders.sets.insert(set_key(set), extra);
    }
    Ok(builders)
}

/// The Docker engine, through its command-line client (`DOCKER_HOST` and the client's
/// configuration choose the engine, local or remote).
#[derive(Debug, Clone)]
pub struct Docker {
    /// The client program.
    pub program: String,
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            program: "docker".to_owned(),
        }
    }
}

impl Docker {
    /// A `docker` command with `args`.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&self.program);
        command.args(args);
        command
    }

    /// Runs `docker args`, returning stdout; a failure names the command and its stderr.
    pub fn output(&self, args: &[&str]) -> Result<String, Error> {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::DockerMissing {
                program: self.program.clone(),
                source,
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(Error::Docker {
                command: args.join(" "),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Streams a tar that `write` writes into `container` at `/` (`docker cp -`), keeping
    /// the entries' owners; a failure names the command and its stderr (or the write's).
    pub fn copy_in(
        &self,
        container: &str,
        write: impl FnOnce(std::process::ChildStdin) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let target = format!("{container}:/");
        let mut child = self
            .command(["cp", "-", &target])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::DockerMissing {
                program: self.program.clone(),
                source,
            })?;
        let written = write(child.stdin.take().expect("stdin is piped"));
        let output = child
            .wait_with_output()
            .map_err(|source| Error::DockerMissing {
                program: self.program.clone(),
                source,
            })?;
        match written {
            Ok(()) if output.status.success() => Ok(()),
            written => {
                let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                if let (Err(e), true) = (written, detail.is_empty()) {
                    detail = format!("writing the tar: {e}");
                }
                Err(Error::Docker {
                    command: format!("cp - {target}"),
                    detail,
                })
            }
        }
    }

    /// Whether the engine has an image with this tag.
    pub fn has_image(&self, tag: &str) -> Result<bool, Error> {
        let status = self
            .command(["image", "inspect", "--format", "{{.Id}}", tag])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| Error::DockerMissing {
                program: self.program.clone(),
                source,
            })?;
        Ok(status.success())
    }
}

/// The tag of the builder image with `identity` (`docker:<hex>` or `docker-emulated:<hex>`):
/// the first 32 hex digits (the kind is part of the hash).
pub fn image_tag(identity: &str) -> String {
    let hex = identity.rsplit(':').next().unwrap_or(identity);
    format!("azb-builder:{}", &hex[..hex.len().min(32)])
}

/// A lock on something of the engine named `name` (`what` in messages): the engine is
/// shared by every store of this machine, so the lock is too.
fn engine_lock(name: &str, what: &str) -> Result<LockFile, Error> {
    let locks = std::env::temp_dir().join("azb-builder-locks");
    err::create_dir_all(&locks).map_err(|e| FsError::new("create directory", &locks, e))?;
    Ok(LockFile::acquire(
        &locks.join(format!("{name}.lock")),
        what,
    )?)
}

/// The label of the volumes [`ImageMaker::toolchain_volume`] makes (the builder's tag):
/// `docker volume prune --all --filter label=org.azb.toolchain-of` removes them.
pub const TOOLCHAIN_LABEL: &str = "org.azb.toolchain-of";

/// Makes (once) the builder image for one platform and `build_packages` set.
pub struct ImageMaker<'a> {
    /// The engine.
    pub docker: &'a Docker,
    /// The store (locks, tmp/, logs).
    pub store: &'a Store,
    /// The lock.
    pub lock: &'a Lock,
    /// The platform's PostgreSQL toolchain.
    pub toolchain: &'a Path,
    /// PostgreSQL major version (where the toolchain goes).
    pub pg_major: u32,
}

impl ImageMaker<'_> {
    /// The tag of the builder for `build_packages` on `platform`, made first if the engine
    /// lacks it. Concurrent callers (threads or processes) make it once.
    pub fn ensure(
        &self,
        platform: Platform,
        build_packages: &[String],
        emulated: bool,
    ) -> Result<String, Error> {
        let identity = self
            .lock
            .builder_identity(platform, build_packages, emulated)
            .map_err(|problem| Error::LockMissing { problem })?;
        let tag = image_tag(&identity);
        self.made_once(&tag, || self.make(platform, build_packages, emulated, &tag))?;
        Ok(tag)
    }

    /// Runs `make` unless the engine has `tag`, under a lock per tag, so concurrent
    /// callers (threads or processes) make it once.
    fn made_once(&self, tag: &str, make: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
        if self.docker.has_image(tag)? {
            return Ok(());
        }
        let _lock = engine_lock(&tag.replace(':', "-"), &format!("the builder image {tag}"))?;
        if self.docker.has_image(tag)? {
            return Ok(());
        }
        make()
    }

    /// The engine volume that holds a copy of builder `tag`'s `/usr` (compilers, system
    /// headers and libraries, the PostgreSQL toolchain), made once per builder and engine
    /// and mounted read-only over `/usr` in its build containers: a build container's
    /// own filesystem is the engine's layered one, and on an engine whose storage driver
    /// is fuse-overlayfs every file a compiler opens in a new container goes through a
    /// FUSE process with nothing cached yet, while a volume is the engine host's own
    /// filesystem, whose caches outlive containers (here, the six compiles of a PGXS
    /// fixture in a new container took 2.3–2.6 s against 3.1–3.3 s, and six compile cache
    /// hits 0.24–0.29 s against 0.52–0.80 s). On overlay2 it changes little and costs
    /// the copy. A volume named `<name>-ready` says the copy is whole (it is made after
    /// it); a copy cut short is made again.
    pub fn toolchain_volume(&self, tag: &str) -> Result<String, Error> {
        let id = tag.rsplit(':').next().unwrap_or(tag);
        let volume = format!("azb-usr-{id}");
        let ready = format!("{volume}-ready");
        let whole = || {
            self.docker
                .output(&[
                    "volume",
                    "inspect",
                    "--format",
                    "{{.Name}}",
                    &volume,
                    &ready,
                ])
                .is_ok()
        };
        if whole() {
            return Ok(volume);
        }
        let _lock = engine_lock(&volume, &format!("the toolchain volume of {tag}"))?;
        if whole() {
            return Ok(volume);
        }
        tracing::info!(
            tag,
            volume,
            "copying the builder's /usr to a volume (once per builder)"
        );
        let label = format!("{TOOLCHAIN_LABEL}={tag}");
        let mount = format!("type=volume,src={volume},dst=/copy,volume-nocopy");
        self.docker
            .output(&["volume", "create", "--label", &label, &volume])?;
        self.docker.output(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "0",
            "--mount",
            &mount,
            "--entrypoint",
            "/bin/sh",
            tag,
            "-c",
            "set -e; find /copy -mindepth 1 -maxdepth 1 -exec rm -rf {} +; cp -a /usr/. /copy/",
        ])?;
        self.docker
            .output(&["volume", "create", "--label", &label, &ready])?;
        Ok(volume)
    }

    /// The tag of `base` (a builder made by [`ensure`](Self::ensure)) with the Rust
    /// toolchain of this machine at [`GUEST_SYSROOT`], for cargo-pgrx builds of `name` for
    /// `platform`: derived once per base, compiler and target (`docker commit` of a
    /// container the toolchain is streamed into), named by all three.
    pub fn ensure_rust(
        &self,
        base: &str,
        name: &RecipeName,
        platform: Platform,
    ) -> Result<String, Error> {
        let rust = rust_for(name, platform)?;
        let identity = rust_identity(name)?;
        let mut targets = vec![rust_target(Platform::Amd64)];
        if platform != Platform::Amd64 {
            targets.push(rust_target(platform));
        }
        let files = rust
            .builder_files(&targets)
            .map_err(|(problem, hint)| Error::Rust {
                name: name.clone(),
                problem,
                hint,
            })?;
        // Named by the base, the compiler and which of its files the image carries.
        let listed: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let mut hasher = blake3::Hasher::new();
        for part in [base, identity.as_str(), &listed.join(",")] {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        let tag = format!("azb-builder:{}", &hasher.finalize().to_hex()[..32]);
        self.made_once(&tag, || {
            tracing::info!(%platform, tag, "adding the Rust toolchain to a builder image");
            let container = format!("azb-rust-{}", &tag["azb-builder:".len()..]);
            let _ = self.docker.output(&["rm", "--force", &container]);
            self.docker
                .output(&["create", "--name", &container, base, "/bin/true"])?;
            let made = self
                .stream_rust(&container, &rust.sysroot, &files)
                .and_then(|()| self.docker.output(&["commit", &container, &tag]).map(drop));
            let _ = self.docker.output(&["rm", "--force", &container]);
            made
        })?;
        Ok(tag)
    }

    /// Streams `files` of the toolchain at `sysroot` into `container` at [`GUEST_SYSROOT`]
    /// (root's, read-only to builds; fixed times).
    fn stream_rust(&self, container: &str, sysroot: &Path, files: &[PathBuf]) -> Result<(), Error> {
        self.docker.copy_in(container, |stdin| {
            let mut tar = tar::Builder::new(std::io::BufWriter::new(stdin));
            tar.mode(tar::HeaderMode::Deterministic);
            tar.follow_symlinks(false);
            // Docker's tar reader knows no GNU sparse entries.
            tar.sparse(false);
            let guest = Path::new(GUEST_SYSROOT.trim_start_matches('/'));
            for file in files {
                let from = sysroot.join(file);
                if from.is_dir() {
                    tar.append_dir_all(guest.join(file), &from)?;
                } else {
                    tar.append_path_with_name(&from, guest.join(file))?;
                }
            }
            tar.into_inner()?.flush()
        })
    }

    fn make(
        &self,
        platform: Platform,
        build_packages: &[String],
        emulated: bool,
        tag: &str,
    ) -> Result<(), Error> {
        let locked = &self.lock.platforms[&platform];
        let found = toolchain_hash(self.toolchain).map_err(|e| Error::Toolchain {
            platform,
            prefix: self.toolchain.to_owned(),
            problem: format!("{e} (run scripts/fetch-toolchain.sh)"),
        })?;
        if found != locked.toolchain {
            return Err(Error::Toolchain {
                platform,
                prefix: self.toolchain.to_owned(),
                problem: "it is not the toolchain builders.lock pins; fetch that one, or run `azb lock update` to pin this one".into(),
            });
        }
        let packages = self
            .lock
            .packages(platform, build_packages, emulated)
            .map_err(|problem| Error::LockMissing { problem })?;
        let index = DebianIndex::from_env().map_err(|source| Error::Lock { platform, source })?;
        let system = if emulated {
            platform.oci_arch()
        } else {
            index.native.as_str()
        };
        index
            .check_served(system, &packages)
            .map_err(|source| Error::Lock { platform, source })?;
        let tmp = self.store.layout().tmp();
        let work = tempfile::Builder::new()
            .prefix("builder-")
            .tempdir_in(&tmp)
            .map_err(|e| FsError::new("create a directory in", &tmp, e))?;
        let hook = work.path().join("customize.sh");
        write_customize_hook(&hook, self.toolchain, &guest_prefix(self.pg_major))?;
        let log = work.path().join("mmdebstrap.log");
        let log_file = err::File::create(&log).map_err(|e| FsError::new("create", &log, e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| FsError::new("open", &log, e))?;
        let includes: Vec<String> = packages.iter().map(|p| p.apt_spec()).collect();
        // An emulated builder is the platform's own system; a cross one is this machine's
        // with the platform's libraries beside.
        let mut architectures = vec![index.native.clone()];
        if emulated {
            architectures = vec![platform.oci_arch().to_owned()];
        } else if platform.oci_arch() != index.native {
            architectures.push(platform.oci_arch().to_owned());
        }
        tracing::info!(%platform, tag, packages = includes.len(), "making a builder image");
        let sources =
            err::File::open(&index.sources).map_err(|e| FsError::new("open", &index.sources, e))?;
        let mut mmdebstrap = Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=custom",
                &format!("--architectures={}", architectures.join(",")),
                "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/info/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                &format!("--include={}", includes.join(",")),
                &format!("--customize-hook={}", hook.display()),
                DISTRIBUTION,
                "-",
                "-",
            ])
            .env("SOURCE_DATE_EPOCH", "0")
            .stdin(sources.into_parts().0)
            .stdout(Stdio::piped())
            .stderr(log_file.into_parts().0)
            .spawn()
            .map_err(|source| Error::Tool {
                program: "mmdebstrap",
                source,
            })?;
        let rootfs = mmdebstrap.stdout.take().expect("stdout is piped");
        let import = self
            .docker
            .command([
                "import",
                "--change",
                &format!("USER {BUILD_UID}:{BUILD_UID}"),
                "--change",
                "WORKDIR /build",
                "--change",
                "ENV PATH=/build/bin:/usr/local/bin:/usr/bin:/bin",
                "-",
                tag,
            ])
            .stdin(rootfs)
            .stdout(Stdio::null())
            .stderr(log_err.into_parts().0)
            .status()
            .map_err(|source| Error::DockerMissing {
                program: self.docker.program.clone(),
                source,
            })?;
        let made = mmdebstrap.wait().map_err(|source| Error::Tool {
            program: "mmdebstrap",
            source,
        })?;
        if !made.success() || !import.success() {
            let _ = self.docker.output(&["image", "rm", "--force", tag]);
            return Err(Error::BuilderImage {
                tag: tag.to_owned(),
                detail: super::log_tail(&log, 20),
            });
        }
        self.check(tag, &packages)
    }

    /// Fails (and removes the image) unless the image holds exactly the locked versions.
    /// (No `--platform`: `docker import` labels every image with the engine's own, and an
    /// emulated builder's arm64 programs run through the kernel's qemu-user binfmt.)
    fn check(&self, tag: &str, packages: &[&LockedPackage]) -> Result<(), Error> {
        let listed = self.docker.output(&[
            "run",
            "--rm",
            "--network",
            "none",
            tag,
            "dpkg-query",
            "-W",
            "-f",
            "${Package}:${Architecture}=${Version}\\n",
        ])?;
        let installed: BTreeSet<&str> = listed.lines().collect();
        let missing: Vec<String> = packages
            .iter()
            .map(|p| format!("{}:{}={}", p.name, p.arch, p.version))
            .filter(|spec| !installed.contains(spec.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let _ = self.docker.output(&["image", "rm", "--force", tag]);
        Err(Error::BuilderImage {
            tag: tag.to_owned(),
            detail: format!(
                "it does not hold these locked packages: {}",
                missing.join(", ")
            ),
        })
    }
}

/// The mmdebstrap customize hook: the toolchain at the guest prefix (root's, read-only to
/// builds), the build user, and /build writable by it alone.
fn write_customize_hook(path: &Path, toolchain: &Path, prefix: &str) -> Result<(), FsError> {
    let mut file = err::File::create(path).map_err(|e| FsError::new("create", path, e))?;
    let script = format!(
        "#!/bin/sh\nset -eu\nroot=$1\n\
         mkdir -p \"$root{prefix}\"\n\
         cp -R --preserve=mode,links '{toolchain}/.' \"$root{prefix}/\"\n\
         chown -R 0:0 \"$root{prefix}\"\n\
         chmod -R go-w \"$root{prefix}\"\n\
         echo 'builder:x:{BUILD_UID}:{BUILD_UID}:azb builds:/build/home:/bin/sh' >>\"$root/etc/passwd\"\n\
         echo 'builder:x:{BUILD_UID}:' >>\"$root/etc/group\"\n\
         mkdir -p \"$root/build/home\" \"$root/build/tmp\" \"$root/build/out\" \"$root/build/bin\"\n\
         chown -R {BUILD_UID}:{BUILD_UID} \"$root/build\"\n\
         rm -rf \"$root\"/var/lib/apt/lists/* \"$root\"/var/cache/apt/* \"$root\"/var/log/*\n",
        toolchain = toolchain.display().to_string().replace('\'', "'\\''"),
    );
    file.write_all(script.as_bytes())
        .map_err(|e| FsError::new("write", path, e))?;
    use std::os::unix::fs::PermissionsExt;
    err::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| FsError::new("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cross_builder_takes_the_targets_libraries_and_its_own_tools() {
        let set = vec![
            "libsodium-dev".to_owned(),
            "cmake".to_owned(),
            "libjson-xs-perl".to_owned(),
            "zlib1g-dev".to_owned(),
        ];
        assert_eq!(
            set_wanted("amd64", Platform::Arm64, &set),
            [
                "libsodium-dev:arm64",
                "cmake",
                "libjson-xs-perl",
                "zlib1g-dev:arm64"
            ]
        );
        assert_eq!(set_wanted("amd64", Platform::Amd64, &set), set);
        assert!(base_wanted("amd64", Platform::Arm64).contains(&"libc6-dev:arm64".to_owned()));
        assert!(!base_wanted("amd64", Platform::Amd64).contains(&"libc6-dev:arm64".to_owned()));
    }

    #[test]
    fn image_tags_are_named_by_the_builder_identity() {
        let id = format!("docker:{}", "ab".repeat(32));
        assert_eq!(image_tag(&id), format!("azb-builder:{}", "ab".repeat(16)));
        // An emulated builder's identity has its own prefix; its tag is as valid.
        let id = format!("docker-emulated:{}", "cd".repeat(32));
        assert_eq!(image_tag(&id), format!("azb-builder:{}", "cd".repeat(16)));
    }
}
