//! The docker executor: builds in a container of the derivation's builder image. Nothing of
//! this machine is mounted: the pinned source, the compiler wrapper and the compile cache
//! are streamed in as a tar on the build's `docker exec`, the dependencies' artifacts
//! (laid over the toolchain) are copied in by the engine, and what the build installed is
//! streamed out at the end, so the same executor drives a remote engine (`DOCKER_HOST`).
//! The container has no network, no capabilities, no new privileges, limits on memory and
//! processes, and runs every step as an unprivileged user who can write only /build (its
//! work tree, DESTDIR, HOME, TMPDIR), /tmp and the shared scratch places (/var/tmp,
//! /run/lock, /dev/shm, /dev/mqueue: [`WIPE`] empties them all when a container serves
//! another build); the toolchain and the rest of the system are root's.
//! arm64 is cross-compiled in an amd64 builder (aarch64 compiler, `:arm64` libraries;
//! the arm64 pg_config, which only runs under emulation, answered by pg_config.rs's
//! native stand-in).
//!
//! Only runs things: the builder image comes from builder.rs, the steps from the driver.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::Error;
use super::builder::{BUILD_UID, Docker, ImageMaker, guest_prefix};
use super::ccache::{self, CompileCache};
use super::executor::{Executor, Sandbox, SessionSpec, Step, log_tail, shell_quote};
use super::kind::KindPaths;
use super::pg_config;
use super::pgrx::{CargoSetup, installed_cargo_pgrx, rustc_wrapper_script};
use super::warm::{self, Container, WarmPool};
use crate::drv::Derivation;
use crate::fs::{FsError, err};
use crate::recipe::{Build, EMULATED_PREFIX, Lock, Platform};
use crate::store::Store;

/// Resource limits of build containers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--memory` (e.g. `8g`).
    pub memory: String,
    /// `--pids-limit`.
    pub pids: u32,
    /// How long a container no build took runs, waiting for the next build (of this run
    /// or the next); zero leaves none after a run.
    pub keep_warm: Duration,
}

/// The limits when this machine's memory cannot be read ([`Limits::from_env`] is what the
/// CLI gives executors).
impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: "8g".to_owned(),
            pids: 4096,
            keep_warm: warm::UNUSED_LIFETIME,
        }
    }
}

impl Limits {
    /// The limits builds get here: memory from `AZB_BUILD_MEMORY`, else three quarters of
    /// this machine's (a build that needs much can have it; a runaway one stops before
    /// the machine does), and how long unused containers wait from `AZB_KEEP_WARM`. Not
    /// part of any hash: a limit decides whether a build finishes, never what it makes.
    /// Err says what is wrong with a variable.
    pub fn from_env() -> Result<Self, String> {
        let keep_warm =
            crate::env::seconds(crate::env::KEEP_WARM)?.unwrap_or(warm::UNUSED_LIFETIME);
        let memory = match crate::env::string(crate::env::BUILD_MEMORY) {
            Some(text) => docker_size(&text).ok_or_else(|| {
                format!(
                    "{} must be a size such as 16g or 8192m, got '{text}'",
                    crate::env::BUILD_MEMORY
                )
            })?,
            None => machine_memory_kib()
                .map(|kib| format!("{}m", kib * 3 / 4 / 1024))
                .unwrap_or_else(|| Self::default().memory),
        };
        Ok(Self {
            memory,
            keep_warm,
            ..Self::default()
        })
    }
}

/// `text` as docker's `--memory` wants it (digits and an optional unit b, k, m or g), or
/// None.
fn docker_size(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let digits = text.trim_end_matches(['b', 'k', 'm', 'g']);
    let unit = &text[digits.len()..];
    let valid = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && unit.len() <= 1
        && digits.parse::<u64>().is_ok_and(|n| n > 0);
    valid.then_some(text)
}

/// MemTotal of /proc/meminfo, in KiB.
fn machine_memory_kib() -> Option<u64> {
    let text = err::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Builds one platform's derivations in builder containers.
pub struct DockerExecutor {
    /// The engine.
    pub docker: Docker,
    /// The platform.
    pub platform: Platform,
    /// The package lock the builders are made from.
    pub lock: Lock,
    /// The platform's PostgreSQL toolchain (copied into builder images).
    pub toolchain: PathBuf,
    /// PostgreSQL major version.
    pub pg_major: u32,
    /// The store (locks and scratch space for making images).
    pub store: Store,
    /// Container limits.
    pub limits: Limits,
    /// Whether builds may reach the network (the engine's default network instead of
    /// none; `AZB_BUILD_NETWORK`).
    pub network: bool,
    /// Containers started ahead of the builds that take them.
    containers: WarmPool,
    /// The builder images already ensured in this run.
    images: ImageMemo,
}

/// The builder images ensured in this run, by what chooses one (build packages, emulated,
/// the recipe of a Rust build): asking the engine again costs a `docker` call each time.
#[derive(Default)]
struct ImageMemo(std::sync::Mutex<BTreeMap<ImageChoice, Builder>>);

/// A builder image and, unless it is emulated, the volume with a copy of its `/usr`
/// (builder.rs's `toolchain_volume`; none when it could not be made).
#[derive(Clone)]
struct Builder {
    image: String,
    usr: Option<String>,
}

/// Build packages, emulated, and the recipe of a Rust build.
type ImageChoice = (Vec<String>, bool, Option<String>);

impl ImageMemo {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<ImageChoice, Builder>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One build container and the input its build streams in.
struct DockerSandbox<'a> {
    docker: Docker,
    container: Container,
    /// Where another container comes from when the spare taken has gone meanwhile: the
    /// pool, the kind's name prefix and its options.
    pool: (&'a WarmPool, String, Vec<String>),
    /// The tar the build's script unpacks first (see [`write_input`]).
    input: PathBuf,
    drv: Derivation,
    paths: KindPaths,
    env: BTreeMap<String, String>,
    log: PathBuf,
    strip: String,
    /// The recipe's compile cache, and where the build's copy of it comes back to.
    cache: Option<(CompileCache, PathBuf)>,
    /// The container's memory limit (docker's syntax).
    memory: String,
}

/// The container pool: unused containers live `keep_warm` and are left for the next run
/// (recorded in the store), or, with zero, live ten minutes and are removed at the end.
fn pool(docker: &Docker, store: &Store, limits: &Limits) -> WarmPool {
    match limits.keep_warm {
        Duration::ZERO => WarmPool::new(docker.clone(), warm::UNUSED_LIFETIME, None),
        lifetime => WarmPool::new(
            docker.clone(),
            lifetime,
            Some(store.layout().spare_containers()),
        ),
    }
}

/// Fixed guest paths.
const WORK: &str = "/build";

/// The label every builder container carries: the store it builds for.
pub const STORE_LABEL: &str = "org.azb.store";

impl DockerExecutor {
    /// An executor for `platform` on the engine `docker`, with the default limits and no
    /// container started yet.
    pub fn new(
        docker: Docker,
        platform: Platform,
        lock: Lock,
        toolchain: PathBuf,
        pg_major: u32,
        store: Store,
        network: bool,
    ) -> Self {
        Self {
            containers: pool(&docker, &store, &Limits::default()),
            images: ImageMemo::default(),
            docker,
            platform,
            lock,
            toolchain,
            pg_major,
            store,
            limits: Limits::default(),
            network,
        }
    }

    /// The same executor with these container limits (before any container started).
    pub fn with_limits(self, limits: Limits) -> Self {
        Self {
            containers: pool(&self.docker, &self.store, &limits),
            limits,
            ..self
        }
    }

    /// The builder image of `drv` (made now if this engine lacks it).
    fn image(&self, drv: &Derivation, build: &Build) -> Result<Builder, Error> {
        let maker = ImageMaker {
            docker: &self.docker,
            store: &self.store,
            lock: &self.lock,
            toolchain: &self.toolchain,
            pg_major: self.pg_major,
        };
        // The builder identity says which builder: an emulated one is the platform's own
        // system under qemu, a cross one this machine's with the target's libraries.
        let emulated = drv.builder.as_str().starts_with(EMULATED_PREFIX);
        // Refused with its place when recipes load; a derivation made by hand still gets a
        // clear error, before any image is made.
        if emulated && matches!(build, Build::CargoPgrx { .. }) {
            return Err(Error::UnsupportedKind {
                name: drv.name.clone(),
                kind: "CargoPgrx in an emulated arm64 builder (cargo-pgrx cross-compiles: drop `emulate_arm64`)",
            });
        }
        let rust = matches!(build, Build::CargoPgrx { .. }).then(|| drv.name.to_string());
        let key = (drv.build_packages.clone(), emulated, rust);
        if let Some(image) = self.images.map().get(&key) {
            return Ok(image.clone());
        }
        let base = maker.ensure(drv.platform, &drv.build_packages, emulated)?;
        // Copying /usr under emulation would take minutes; a volume that cannot be made
        // costs speed, not the build. A Rust builder adds /opt/rust only: its base's.
        let usr = if emulated {
            None
        } else {
            maker
                .toolchain_volume(&base)
                .inspect_err(
                    |error| tracing::warn!(%error, base, "builds use the image's own /usr"),
                )
                .ok()
        };
        let image = match key.2 {
            Some(_) => maker.ensure_rust(&base, &drv.name, drv.platform)?,
            None => base,
        };
        let builder = Builder { image, usr };
        self.images.map().insert(key, builder.clone());
        Ok(builder)
    }

    /// `docker create` options of a build container of `builder` for a derivation with
    /// or without dependencies. Nothing else of the build is in them, so a container can
    /// be started before the build that takes it is known. The builder's `/usr` volume is
    /// mounted read-only unless dependencies are laid over the toolchain (in `/usr`).
    fn options(&self, builder: &Builder, has_deps: bool) -> Vec<String> {
        let user = format!("{BUILD_UID}:{BUILD_UID}");
        let usr = match &builder.usr {
            Some(volume) if !has_deps => {
                vec![
                    "--mount".to_owned(),
                    format!("type=volume,src={volume},dst=/usr,readonly"),
                ]
            }
            _ => Vec::new(),
        };
        // The label says whose containers these are (`docker ps --filter label=...`): the
        // store they build for (the pool adds the process that started them).
        let store_label = format!("{STORE_LABEL}={}", self.store_label());
        [
            "--label",
            &store_label,
            "--network",
            if self.network { "bridge" } else { "none" },
            "--user",
            &user,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            &self.limits.memory,
            "--pids-limit",
            &self.limits.pids.to_string(),
            "--tmpfs",
            "/tmp:rw,exec,size=2g",
            // The work tree on a volume of its own: the engine's own filesystem, not the
            // container's layered one (fuse-overlayfs here made ccache's small files and
            // the compiler's outputs a third slower). Removed with the container.
            "--mount",
            &format!("type=volume,dst={WORK}"),
            "--workdir",
            WORK,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(usr)
        .chain([builder.image.clone()])
        .collect()
    }

    /// The store, as containers are labelled with it.
    fn store_label(&self) -> String {
        self.store.layout().root().display().to_string()
    }

    /// The prefix of build containers' names.
    fn container_prefix(platform: Platform) -> String {
        format!("azb-build-{}", platform.oci_arch())
    }
}

impl Executor for DockerExecutor {
    fn warm(&self, drv: &Derivation, build: &Build) {
        self.containers
            .reap_once(&format!("{STORE_LABEL}={}", self.store_label()));
        match self.image(drv, build) {
            Ok(image) => self.containers.start_ahead(
                &Self::container_prefix(drv.platform),
                &self.options(&image, !drv.deps.is_empty()),
            ),
            // The build meets it again and reports it.
            Err(error) => tracing::debug!(%error, "no builder container started ahead"),
        }
    }

    fn open<'a>(&'a self, spec: &SessionSpec<'_>) -> Result<Box<dyn Sandbox + 'a>, Error> {
        let drv = spec.drv;
        let emulated = drv.builder.as_str().starts_with(EMULATED_PREFIX);
        let image = self.image(drv, spec.build)?;
        let cargo_pgrx = match spec.build {
            Build::CargoPgrx { pgrx, .. } => {
                Some(installed_cargo_pgrx(&self.store, &drv.name, pgrx)?)
            }
            _ => None,
        };
        let prefix = guest_prefix(drv.pg_major);
        let name = drv.name.as_str();
        let cross = self.platform != Platform::Amd64 && !emulated;
        let (cc, strip) = if cross {
            ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-strip")
        } else {
            ("gcc", "strip")
        };
        let mut env = spec.env.clone();
        env.insert(
            "PATH".into(),
            format!("{WORK}/bin:/usr/local/bin:/usr/bin:/bin"),
        );
        env.insert("HOME".into(), format!("{WORK}/home"));
        env.insert("TMPDIR".into(), format!("{WORK}/tmp"));
        let cache = CompileCache::of(&self.store, drv);
        if cache.is_some() {
            CompileCache::env(&mut env);
        }
        if cross {
            // pkg-config sees the target's .pc files only.
            env.insert(
                "PKG_CONFIG_LIBDIR".into(),
                "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig".into(),
            );
        }
        let (prefix_name, options) = (
            Self::container_prefix(drv.platform),
            self.options(&image, !drv.deps.is_empty()),
        );
        let container = self.containers.take(&prefix_name, &options)?;
        let input = spec.work.join("input.tar");
        let mut sandbox = DockerSandbox {
            docker: self.docker.clone(),
            memory: self.limits.memory.clone(),
            container,
            pool: (&self.containers, prefix_name, options),
            input: input.clone(),
            drv: drv.clone(),
            paths: KindPaths {
                dir: match &drv.subdir {
                    Some(sub) => Path::new(WORK).join(name).join(sub),
                    None => Path::new(WORK).join(name),
                },
                pg_config: if cross {
                    Path::new(WORK).join("bin/pg_config")
                } else {
                    Path::new(&prefix).join("bin/pg_config")
                },
                cc: Path::new(WORK).join("bin/cc"),
                destdir: Path::new(WORK).join("out"),
                make_jobs: spec.make_jobs,
                image_prefix: prefix.clone(),
                prefix: PathBuf::from(&prefix),
                out_of_tree: Path::new(WORK).join("out-of-tree"),
                cargo: cargo_pgrx
                    .is_some()
                    .then(|| CargoSetup::in_builder(drv.platform, Path::new(WORK))),
            },
            env,
            log: spec.log.to_owned(),
            strip: strip.to_owned(),
            cache: cache.map(|cache| (cache, spec.work.join("ccache"))),
        };
        // From here on the container is removed when the sandbox is dropped.
        let rust = match (&cargo_pgrx, &sandbox.paths.cargo) {
            (Some(binary), Some(setup)) => Some(RustInput {
                cargo_pgrx: binary,
                cargo_home: self.store.layout().cargo_home(),
                setup,
            }),
            _ => None,
        };
        let cache = sandbox.cache.as_ref().map(|(cache, _)| cache);
        write_input(&input, spec, &prefix, cc, cross, rust, cache)?;
        if !spec.deps.is_empty() {
            // The dependencies go into the toolchain, which is root's: the engine copies
            // them in (the build user streams the rest in itself).
            let deps = spec.work.join("deps.tar");
            write_deps(&deps, spec.deps, &prefix)?;
            match sandbox.copy_in(&deps) {
                Err(error) if sandbox.container.may_have_gone() => {
                    tracing::debug!(%error, "the container taken is gone; starting another");
                    sandbox.replace_container()?;
                    sandbox.copy_in(&deps)?;
                }
                copied => copied?,
            }
        }
        Ok(Box::new(sandbox))
    }
}

/// The tar the build user unpacks in /build before the first step (streamed in on the
/// `docker exec`: no `docker cp` and no engine-side unpacking): the source as the work
/// tree, the compiler wrapper, for a `cross` build the native pg_config stand-in, the
/// compile cache, and what a cargo-pgrx build adds. Its paths are relative to /build
/// ([`in_work`]), which is the build user's.
fn write_input(
    path: &Path,
    spec: &SessionSpec<'_>,
    prefix: &str,
    cc: &str,
    cross: bool,
    rust: Option<RustInput<'_>>,
    cache: Option<&CompileCache>,
) -> Result<(), Error> {
    let _held = cache.map(CompileCache::hold).transpose()?;
    write_tar(path, |tar| {
        tar.follow_symlinks(false);
        tar.append_dir_all(spec.drv.name.as_str(), spec.source)?;
        let wrapper = compiler_wrapper(cc, cache.is_some());
        append_script(tar, Path::new("bin/cc"), &wrapper)?;
        if cross {
            let real = format!("{prefix}/bin/pg_config");
            let stand_in = pg_config::stand_in(&real, &format!("{WORK}/pg_config.answers"));
            append_script(tar, Path::new("bin/pg_config"), &stand_in)?;
        }
        if let Some(cache) = cache {
            let kept = cache.dir.is_dir().then_some(cache.dir.as_path());
            append_owned(tar, in_work(Path::new(ccache::GUEST_DIR)), kept)?;
        }
        match rust {
            Some(rust) => rust.append(tar),
            None => Ok(()),
        }
    })
}

/// Writes a tar (fixed owners and times) to `path`, its entries from `fill`.
fn write_tar(
    path: &Path,
    fill: impl FnOnce(&mut tar::Builder<std::io::BufWriter<err::File>>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let io = |e| FsError::new("write", path, e);
    let file = err::File::create(path).map_err(|e| FsError::new("create", path, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    fill(&mut tar).map_err(io)?;
    tar.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(())
}

/// A path under /build as the input tar names it: relative to /build.
fn in_work(path: &Path) -> &Path {
    path.strip_prefix(WORK).unwrap_or(path)
}

/// The tar the engine copies in at `/` for a build with dependencies: their artifacts,
/// laid over the toolchain under `prefix` (root's).
fn write_deps(path: &Path, deps: &[PathBuf], prefix: &str) -> Result<(), Error> {
    let objects = deps
        .iter()
        .map(|object| crate::store::read_object(object))
        .collect::<Result<Vec<_>, _>>()?;
    let guest_prefix = Path::new(prefix.trim_start_matches('/'));
    write_tar(path, |tar| {
        // Docker's tar reader knows no GNU sparse entries.
        tar.sparse(false);
        for object in objects {
            let mut archive = tar::Archive::new(object);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let target = guest_prefix.join(entry.path()?);
                let mut header = entry.header().clone();
                tar.append_data(&mut header, &target, &mut entry)?;
            }
        }
        Ok(())
    })
}

/// The compiler wrapper: drops `-march=native` and friends (an artifact must run on any
/// CPU of its platform) and, with the compile cache, compiles through ccache when the
/// builder has it (a lock from before ccache joined the builders has none).
///
/// A compile through ccache gets `-MD -MF <a file of its own in /tmp>` unless it names
/// its own dependency output: ccache's depend mode then reads the compiler's list of
/// headers instead of running the preprocessor a second time, which nearly doubled the
/// cost of a miss on PostgreSQL's headers (2.0 s against 3.7 s for a six-file extension).
/// The dependency file is never beside the output: `-MD` alone would write `/dev/null.d`
/// for the feature checks that compile to `-o /dev/null`, fail them, and so change what
/// the build detects.
fn compiler_wrapper(cc: &str, through_ccache: bool) -> String {
    let ccache = if through_ccache {
        format!(
            "if command -v ccache >/dev/null; then\n  \
               case \" $* \" in *\" -c \"*) case \" $* \" in *\" -M\"*) ;; \
               *) set -- \"$@\" -MD -MF \"/tmp/azb-ccache-$$.d\" ;; esac ;; esac\n  \
               exec ccache {cc} \"$@\"\nfi\n"
        )
    } else {
        String::new()
    };
    format!(
        "#!/bin/sh\n# azb compiler wrapper: portable CPU flags.\n\
         for arg; do\n  shift\n  case \"$arg\" in\n    -march=native|-mtune=native|-mcpu=native) ;;\n    \
         *) set -- \"$@\" \"$arg\" ;;\n  esac\ndone\n{ccache}exec {cc} \"$@\"\n"
    )
}

/// What a cargo-pgrx build adds to the input: cargo-pgrx (root's), the rustc wrapper, and
/// the store's crates as a cargo home the build user owns (cargo unpacks crates there).
struct RustInput<'a> {
    cargo_pgrx: &'a Path,
    cargo_home: PathBuf,
    setup: &'a CargoSetup,
}

impl RustInput<'_> {
    fn append<W: Write>(&self, tar: &mut tar::Builder<W>) -> std::io::Result<()> {
        tar.append_path_with_name(self.cargo_pgrx, in_work(&self.setup.cargo_pgrx))?;
        let maps = [
            (self.setup.rust.sysroot.clone(), "/rust".to_owned()),
            (self.setup.cargo_home.clone(), "/cargo".to_owned()),
        ];
        append_script(
            tar,
            in_work(&self.setup.rustc_wrapper),
            &rustc_wrapper_script(&maps),
        )?;
        let home = in_work(&self.setup.cargo_home);
        for dir in ["", "registry", "git"] {
            append_owned(tar, &home.join(dir), None)?;
        }
        for part in ["registry/index", "registry/cache", "git/db"] {
            let from = self.cargo_home.join(part);
            if from.is_dir() {
                append_owned(tar, &home.join(part), Some(&from))?;
            }
        }
        Ok(())
    }
}

/// Appends an executable script (root's, fixed time).
fn append_script<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    text: &str,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, text.as_bytes())
}

/// Appends the directory `to` and, with `from`, the tree under it (files and directories,
/// sorted, so the input is the same every time), every entry owned by the build user so
/// the build can write in it.
fn append_owned<W: Write>(
    tar: &mut tar::Builder<W>,
    to: &Path,
    from: Option<&Path>,
) -> std::io::Result<()> {
    let owned = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(0);
        header.set_uid(BUILD_UID.into());
        header.set_gid(BUILD_UID.into());
        header
    };
    let mut header = owned(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, to, std::io::empty())?;
    let Some(from) = from else {
        return Ok(());
    };
    let mut entries: Vec<_> = err::read_dir(from)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let target = to.join(path.file_name().unwrap_or_default());
        let meta = err::symlink_metadata(&path)?;
        if meta.is_dir() {
            append_owned(tar, &target, Some(&path))?;
        } else if meta.is_file() {
            let mut header = owned(tar::EntryType::Regular, 0o644, meta.len());
            tar.append_data(&mut header, &target, err::File::open(&path)?)?;
        }
    }
    Ok(())
}

impl DockerSandbox<'_> {
    /// Whether the kernel killed a process of the container for its memory limit (the
    /// cgroup's `oom_kill` count, v2 or v1; the engine's own flag covers only the
    /// container's first process).
    fn ran_out_of_memory(&self) -> bool {
        let read = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null || true";
        self.docker
            .output(&["exec", &self.container.name, "/bin/sh", "-c", read])
            .is_ok_and(|text| {
                text.lines().any(|line| {
                    line.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
    }

    /// Takes a new container in place of a spare that has gone.
    fn replace_container(&mut self) -> Result<(), Error> {
        let (pool, prefix, options) = &self.pool;
        self.container = pool.take_new(prefix, options)?;
        Ok(())
    }

    fn copy_in(&self, tar: &Path) -> Result<(), Error> {
        let mut file = err::File::open(tar).map_err(|e| FsError::new("open", tar, e))?;
        self.docker.copy_in(&self.container.name, |mut stdin| {
            std::io::copy(&mut file, &mut stdin).map(drop)
        })
    }
}

impl Sandbox for DockerSandbox<'_> {
    fn paths(&self) -> &KindPaths {
        &self.paths
    }

    /// The whole build is one `docker exec` of a script: each `docker exec` costs tens of
    /// milliseconds, a build has half a dozen steps. The script unpacks its input from
    /// stdin, announces each step on stderr with a marker line (a per-build random token,
    /// so build output cannot pass for one), writes the build's output there too, and
    /// streams DESTDIR as a tar on stdout at the end; this side logs the lines, reports
    /// the steps and unpacks the tar.
    fn build(
        mut self: Box<Self>,
        steps: &[Step],
        started: &mut dyn FnMut(&Step),
        into: &Path,
    ) -> Result<(), Error> {
        let cached = self.cache.is_some();
        let used = self.container.used();
        let script = BuildScript::new(&self.drv, steps, &self.strip, cached, used);
        let mut ran = self.run(&script, steps, started, into)?;
        if ran.reached.is_none() && !ran.status.success() && self.container.may_have_gone() {
            // Nothing of the script ran: the spare an earlier run left, or the container
            // a build before used, has gone (or its wipe failed).
            tracing::debug!("the container taken is gone; starting another");
            self.replace_container()?;
            ran = self.run(&script, steps, started, into)?;
        }
        self.finish(ran)?;
        let DockerSandbox {
            container,
            pool: (pool, ..),
            ..
        } = *self;
        pool.give_back(container);
        Ok(())
    }
}

/// How a build's script ended.
struct Ran {
    /// The last step that began, if any did.
    reached: Option<String>,
    status: std::process::ExitStatus,
    /// How unpacking its output went.
    unpacked: Result<(), Error>,
}

impl DockerSandbox<'_> {
    /// Runs `script` in the container, its input streamed in.
    fn run(
        &self,
        script: &BuildScript,
        steps: &[Step],
        started: &mut dyn FnMut(&Step),
        into: &Path,
    ) -> Result<Ran, Error> {
        let mut command = self.docker.command(["exec", "--interactive", "--user"]);
        command.arg(format!("{BUILD_UID}:{BUILD_UID}"));
        command.arg("--workdir").arg(WORK);
        for (key, value) in &self.env {
            command.arg("--env").arg(format!("{key}={value}"));
        }
        command
            .arg(&self.container.name)
            .args(["/bin/sh", "-c", &script.text])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = self.docker.program.clone();
        let missing = |source| Error::DockerMissing {
            program: program.clone(),
            source,
        };
        let mut input =
            err::File::open(&self.input).map_err(|e| FsError::new("open", &self.input, e))?;
        let mut child = command.spawn().map_err(missing)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let staged = self.cache.as_ref().map(|(_, staged)| staged.as_path());
        let (logged, unpacked) = std::thread::scope(|scope| {
            // A script that stops early reads no more: what the copy meets then is the
            // script's failure, which the status reports.
            scope.spawn(move || std::io::copy(&mut input, &mut stdin).map(drop));
            let unpacking = scope.spawn(move || unpack_out(stdout, into, staged));
            let logged = script.follow(stderr, &self.log, started, steps);
            // A step that failed wrote no tar: the unpack sees an empty stream.
            let unpacked = unpacking.join().unwrap_or_else(|panic| {
                std::panic::resume_unwind(panic);
            });
            (logged, unpacked)
        });
        let status = child.wait().map_err(missing)?;
        Ok(Ran {
            reached: logged?,
            status,
            unpacked,
        })
    }

    /// The build's result from how its script ended.
    fn finish(&self, ran: Ran) -> Result<(), Error> {
        let Ran {
            reached,
            status,
            unpacked,
        } = ran;
        if !status.success() {
            let Some(step) = reached else {
                // Nothing of the script ran: the engine's own message is in the log.
                return Err(Error::Docker {
                    command: format!("exec {} /bin/sh -c <build script>", self.container.name),
                    detail: log_tail(&self.log, 5),
                });
            };
            if self.ran_out_of_memory() {
                return Err(Error::OutOfMemory {
                    name: self.drv.name.clone(),
                    platform: self.drv.platform,
                    step,
                    limit: self.memory.clone(),
                    log: self.log.clone(),
                });
            }
            return Err(Error::Command {
                name: self.drv.name.clone(),
                platform: self.drv.platform,
                step,
                status: status.to_string(),
                tail: log_tail(&self.log, 25),
                log: self.log.clone(),
            });
        }
        unpacked?;
        match &self.cache {
            Some((cache, staged)) if staged.is_dir() => cache.keep(staged),
            _ => Ok(()),
        }
    }
}

/// What a build in a used container runs first (after marking the container taken): ends
/// every other process of the build user (the container's first process, which is no
/// build's, is spared by `kill -1`), removes the System V IPC objects it may remove, and
/// empties every directory the build user can write in, but for the taken marker, then
/// makes /build's directories again. A wipe that fails fails the script before its
/// first step, so the build runs in a new container instead.
const WIPE: &str = "kill -9 -1 2>/dev/null || true
ipcrm --all 2>/dev/null || true
for dir in /build /tmp /var/tmp /run/lock /dev/shm /dev/mqueue; do
  if [ -d \"$dir\" ]; then find \"$dir\" -mindepth 1 ! -path /tmp/.azb-taken -delete; fi
done
mkdir /build/home /build/tmp /build/out /build/bin
";

/// The shell script of one build, and how to read what it writes on stderr.
struct BuildScript {
    text: String,
    /// Starts every marker line; random per build.
    marker: String,
    /// Per marker number: the step's label, its command line as the log shows it, and the
    /// caller's step to report (none for the script's own steps).
    steps: Vec<(String, String, Option<usize>)>,
}

impl BuildScript {
    /// `cached`: the compile cache is at [`ccache::GUEST_DIR`] and goes back with the output.
    /// `used`: a build before used the container, so the script wipes what it could have
    /// left ([`WIPE`]) first.
    fn new(drv: &Derivation, steps: &[Step], strip: &str, cached: bool, used: bool) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let token = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let marker = format!("\u{1e}azb-step-{token:016x} ");
        let mut script = Self {
            // fd 3 is the tar of what was installed; everything else goes to stderr.
            // The container is this build's from the first line on (it no longer ends
            // by itself).
            text: format!(
                "set -eu\n: >{taken}\n{wipe}exec 3>&1 1>&2\nstep() {{ printf '\\036azb-step-{token:016x} %s\\n' \"$1\"; }}\n",
                taken = warm::TAKEN_MARKER,
                wipe = if used { WIPE } else { "" },
            ),
            marker,
            steps: Vec::new(),
        };
        // The input (write_input) comes on stdin; the rest of stdin is drained, so the
        // writer never waits on a reader that has stopped, and the steps get none of it.
        script.add(
            "unpack input",
            &format!("$ tar -x -C {WORK} < input  (the source as {WORK}/{}, the compiler wrapper, the compile cache)", drv.name),
            None,
            &format!("tar -x -f - -C {WORK}\ncat >/dev/null\nexec </dev/null"),
        );

        for (index, step) in steps.iter().enumerate() {
            let argv: Vec<String> = step.argv.iter().map(|a| shell_quote(a)).collect();
            script.add(
                &step.label,
                &format!("$ {}  (in {})", step.argv.join(" "), step.cwd.display()),
                Some(index),
                &format!(
                    "cd {}\n{} 3>&-",
                    shell_quote(&step.cwd.to_string_lossy()),
                    argv.join(" ")
                ),
            );
        }
        // Strip what was built for the platform; anything else is left for the driver to
        // refuse by its ELF machine.
        script.own(
            "strip",
            &format!(
                "find {WORK}/out -type f | while read -r f; do \
                   [ \"$(head -c 4 \"$f\" | od -An -tx1 | tr -d ' \\n')\" = 7f454c46 ] || continue; \
                   {strip} --strip-unneeded \"$f\" 2>/dev/null || true; \
                 done"
            ),
        );
        if cached {
            // What ccache did in this build (its statistics log: one line per event).
            let log = ccache::STATS_LOG;
            script.add(
                "compile cache",
                "$ # the compile cache's hits and misses",
                None,
                &format!(
                    "if [ -f {log} ]; then echo \"compile cache: $(grep -c '^direct_cache_hit' {log} || true) hits, $(grep -c '^cache_miss' {log} || true) misses\"; fi"
                ),
            );
        }
        let back = if cached { "out ccache" } else { "out" };
        script.own("copy out", &format!("cd {WORK}\ntar -c {back} >&3"));
        script
    }

    /// A step of the script's own: logged as its shell text.
    fn own(&mut self, label: &str, shell: &str) {
        self.add(
            label,
            &format!("$ {}", shell.replace('\n', "; ")),
            None,
            shell,
        );
    }

    fn add(&mut self, label: &str, shown: &str, reported: Option<usize>, shell: &str) {
        let number = self.steps.len();
        self.text.push_str(&format!("step {number}\n{shell}\n"));
        self.steps
            .push((label.to_owned(), shown.to_owned(), reported));
    }

    /// Copies the script's stderr to the log, a marker replaced by its step's command
    /// line, and reports the caller's steps as they begin. Returns the label of the last
    /// step that began, if any did.
    fn follow(
        &self,
        stderr: impl std::io::Read,
        log: &Path,
        started: &mut dyn FnMut(&Step),
        steps: &[Step],
    ) -> Result<Option<String>, Error> {
        use std::io::BufRead;
        let mut out = err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| FsError::new("open log", log, e))?;
        let mut write = |bytes: &[u8]| {
            out.write_all(bytes)
                .map_err(|e| FsError::new("write log", log, e))
        };
        let mut reached: Option<String> = None;
        // How long each step took, for `-v` (the log is the build's own words).
        let mut since = std::time::Instant::now();
        let step_done = |step: Option<String>, since: &mut std::time::Instant| {
            if let Some(step) = step {
                let seconds = since.elapsed().as_secs_f64();
                tracing::debug!(step, "build step took {seconds:.3} s");
            }
            *since = std::time::Instant::now();
        };
        let marker = self.marker.as_bytes();
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let line = line.map_err(|e| FsError::new("read build output for", log, e))?;
            let at = line.windows(marker.len()).position(|w| w == marker);
            let Some(at) = at else {
                write(&line)?;
                write(b"\n")?;
                continue;
            };
            // Output without a final newline ends where the marker begins.
            if at > 0 {
                write(&line[..at])?;
                write(b"\n")?;
            }
            let number = std::str::from_utf8(&line[at + marker.len()..])
                .ok()
                .and_then(|n| n.trim().parse::<usize>().ok());
            let Some((label, shown, reported)) = number.and_then(|n| self.steps.get(n)) else {
                write(&line[at..])?;
                write(b"\n")?;
                continue;
            };
            write(shown.as_bytes())?;
            write(b"\n")?;
            if let Some(step) = reported.and_then(|i| steps.get(i)) {
                started(step);
            }
            step_done(reached.replace(label.clone()), &mut since);
        }
        step_done(reached.clone(), &mut since);
        Ok(reached)
    }
}

/// Unpacks the tar of /build/out (entries `out/...`, and `ccache/...` with the compile
/// cache) and moves its `out` to `into`, its `ccache` to `cache`. tar refuses entries
/// that would land outside the directory, through `..` or a symlink the build planted.
fn unpack_out(
    mut stream: impl std::io::Read,
    into: &Path,
    cache: Option<&Path>,
) -> Result<(), Error> {
    let parent = into.parent().unwrap_or(into);
    let scratch = tempfile::Builder::new()
        .prefix(".out-")
        .tempdir_in(parent)
        .map_err(|e| FsError::new("create a directory in", parent, e))?;
    let mut archive = tar::Archive::new(&mut stream);
    archive.set_preserve_ownerships(false);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    archive
        .unpack(scratch.path())
        .map_err(|e| FsError::new("unpack the build output into", scratch.path(), e))?;
    // tar stops at the first end block; docker cp writes padding after it and dies of
    // SIGPIPE (status 141, no message) when nobody reads it.
    std::io::copy(&mut stream, &mut std::io::sink())
        .map_err(|e| FsError::new("read the build output for", scratch.path(), e))?;
    let out = scratch.path().join("out");
    if out.is_dir() {
        err::rename(&out, into).map_err(|e| FsError::new("move the build output to", into, e))?;
    } else {
        err::create_dir_all(into).map_err(|e| FsError::new("create directory", into, e))?;
    }
    let back = scratch.path().join("ccache");
    if let Some(cache) = cache.filter(|_| back.is_dir()) {
        err::rename(&back, cache)
            .map_err(|e| FsError::new("move the compile cache to", cache, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod script_tests {
    use super::*;

    #[test]
    fn through_ccache_a_compile_to_dev_null_still_succeeds() {
        // This machine's gcc, and a ccache that only runs what it is given, so what is
        // tested is the arguments the wrapper passes.
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        crate::fs::err::create_dir_all(&bin).unwrap();
        let write = |path: &Path, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            crate::fs::err::write(path, text).unwrap();
            crate::fs::err::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write(&bin.join("ccache"), "#!/bin/sh\nexec \"$@\"\n");
        let cc = bin.join("cc");
        write(&cc, &compiler_wrapper("gcc", true));
        crate::fs::err::write(dir.path().join("x.c"), "int f(void) { return 1; }\n").unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let run = |args: &[&str]| {
            crate::fs::output_of_written_program(
                std::process::Command::new(&cc)
                    .args(args)
                    .current_dir(dir.path())
                    .env("PATH", &path),
            )
            .status
            .success()
        };
        // A feature check: compile to /dev/null (with -MD alone gcc would write
        // /dev/null.d and fail).
        assert!(run(&["-c", "x.c", "-o", "/dev/null", "-march=native"]));
        assert!(run(&["-c", "x.c", "-o", "x.o"]));
        assert!(dir.path().join("x.o").exists());
        // No dependency file beside the output.
        assert!(!dir.path().join("x.d").exists());
    }

    #[test]
    fn memory_sizes_are_docker_sizes_and_this_machines_memory_is_read() {
        for (text, size) in [
            ("16g", "16g"),
            ("8192M", "8192m"),
            (" 512m ", "512m"),
            ("1073741824", "1073741824"),
        ] {
            assert_eq!(docker_size(text).as_deref(), Some(size), "{text}");
        }
        for bad in ["", "g", "0", "16gb", "-1g", "1.5g", "lots", "16 g"] {
            assert_eq!(docker_size(bad), None, "{bad}");
        }
        let kib = machine_memory_kib().expect("this machine has /proc/meminfo");
        assert!(kib > 0);
    }

    fn drv() -> Derivation {
        Derivation::example("azb_x")
    }

    #[test]
    fn markers_become_command_lines_and_report_the_callers_steps() {
        let steps = [
            Step {
                label: "make".into(),
                argv: vec!["make".into(), "-j2".into()],
                cwd: PathBuf::from("/build/azb_x"),
            },
            Step {
                label: "make install".into(),
                argv: vec!["make".into(), "install".into()],
                cwd: PathBuf::from("/build/azb_x"),
            },
        ];
        let script = BuildScript::new(&drv(), &steps, "strip", false, false);
        assert!(
            script
                .text
                .contains("cd '/build/azb_x'\n'make' '-j2' 3>&-\n")
        );
        let m = &script.marker;
        // Output without a final newline before a marker; a forged marker of another
        // token is plain output; a marker number out of range is kept as it is.
        let stderr = format!(
            "{m}0\n{m}1\ncc -c x.c\npartial line{m}2\n\u{1e}azb-step-0000000000000000 3\n{m}99\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut seen = Vec::new();
        let reached = script
            .follow(
                stderr.as_bytes(),
                &log,
                &mut |step| seen.push(step.label.clone()),
                &steps,
            )
            .unwrap();
        assert_eq!(seen, ["make", "make install"]);
        assert_eq!(reached.as_deref(), Some("make install"));
        let text = crate::fs::err::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "$ tar -x -C /build < input  (the source as /build/azb_x, the compiler wrapper, the compile cache)"
        );
        assert_eq!(lines[1], "$ make -j2  (in /build/azb_x)");
        assert_eq!(lines[2], "cc -c x.c");
        assert_eq!(lines[3], "partial line");
        assert_eq!(lines[4], "$ make install  (in /build/azb_x)");
        assert_eq!(lines[5], "\u{1e}azb-step-0000000000000000 3");
        assert_eq!(lines[6], format!("{}99", m.trim_start()));
    }

    #[test]
    fn only_a_used_container_is_wiped_and_the_wipe_spares_the_taken_marker() {
        let steps = [];
        let fresh = BuildScript::new(&drv(), &steps, "strip", false, false);
        let used = BuildScript::new(&drv(), &steps, "strip", false, true);
        assert!(!fresh.text.contains(WIPE));
        // Marked taken first: the wipe ends the container's first process's timer.
        let taken = format!(": >{}\n", warm::TAKEN_MARKER);
        assert!(
            used.text.contains(&format!("{taken}{WIPE}")),
            "{}",
            used.text
        );
        assert!(WIPE.contains(&format!("! -path {} -delete", warm::TAKEN_MARKER)));
        assert!(WIPE.contains(&format!("for dir in {WORK} /tmp ")));
    }

    #[test]
    fn the_script_runs_in_a_shell_stops_at_the_failing_step_and_writes_no_tar() {
        // The script itself, run by this machine's sh in a directory standing for /build.
        let steps = [
            Step {
                label: "configure".into(),
                argv: vec!["true".into()],
                cwd: PathBuf::from("/"),
            },
            Step {
                label: "make".into(),
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo \"it's broken\" >&2; exit 3".into(),
                ],
                cwd: PathBuf::from("/"),
            },
            Step {
                label: "make install".into(),
                argv: vec!["echo".into(), "never".into()],
                cwd: PathBuf::from("/"),
            },
        ];
        let script = BuildScript::new(&drv(), &steps, "true", false, false);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let text = script
            .text
            .replace(
                warm::TAKEN_MARKER,
                &root.join("taken").display().to_string(),
            )
            .replace(WORK, &root.display().to_string());
        // The input on stdin, with more after its end: the script reads it all.
        let mut input = tar::Builder::new(Vec::new());
        append_script(&mut input, Path::new("azb_x/configure"), "#!/bin/sh\n").unwrap();
        let mut input = input.into_inner().unwrap();
        input.extend(vec![0; 1 << 20]);
        let mut child = std::process::Command::new("sh")
            .args(["-c", &text])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(root.join("azb_x/configure").is_file());
        assert_eq!(
            output.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stdout.is_empty());
        let log = root.join("log");
        let mut seen = Vec::new();
        let reached = script
            .follow(
                &output.stderr[..],
                &log,
                &mut |s| seen.push(s.label.clone()),
                &steps,
            )
            .unwrap();
        assert_eq!(seen, ["configure", "make"]);
        assert_eq!(reached.as_deref(), Some("make"));
        let log = crate::fs::err::read_to_string(&log).unwrap();
        assert!(log.contains("it's broken"), "{log}");
        assert!(!log.contains("never"), "{log}");
    }
}

#[cfg(test)]
mod unpack_tests {
    use super::unpack_out;
    use std::io::Read;

    /// A reader that counts what was read from it.
    struct Counted<R>(R, usize);

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn the_whole_stream_is_read_padding_after_the_end_block_too() {
        // As docker cp writes it: entries, the end block, then zero padding.
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "out/lib/x.so", &b"elf"[..])
            .unwrap();
        let mut bytes = builder.into_inner().unwrap();
        bytes.extend(std::iter::repeat_n(0u8, 8192));
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("out");
        let mut counted = Counted(&bytes[..], 0);
        unpack_out(&mut counted, &into, None).unwrap();
        assert_eq!(counted.1, bytes.len());
        assert_eq!(crate::fs::err::read(into.join("lib/x.so")).unwrap(), b"elf");
    }
}
