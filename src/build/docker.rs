//! The docker executor: builds in a container of the derivation's builder image. Nothing of
//! this machine is mounted: the pinned source, the dependencies' artifacts (laid over the
//! toolchain) and the compiler wrapper are streamed in as a tar before the container
//! starts, and what the build installed is streamed out at the end, so the same executor
//! drives a remote engine (`DOCKER_HOST`). The container has no network, no capabilities,
//! no new privileges, limits on memory and processes, and runs every step as an
//! unprivileged user who can write only /build (its work tree, DESTDIR, HOME, TMPDIR) and
//! /tmp; the source as streamed in, the toolchain and the rest of the system are root's.
//! arm64 is cross-compiled in an amd64 builder (aarch64 compiler, `:arm64` libraries).
//!
//! Only runs things: the builder image comes from builder.rs, the steps from the driver.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::Error;
use super::builder::{BUILD_UID, Docker, ImageMaker, guest_prefix};
use super::executor::{Executor, Sandbox, SessionSpec, Step, run_logged};
use super::kind::KindPaths;
use super::pgrx::{CargoSetup, installed_cargo_pgrx, rustc_wrapper_script};
use crate::drv::Derivation;
use crate::fs::{FsError, err};
use crate::recipe::{Build, EMULATED_PREFIX, Lock, Platform};
use crate::store::Store;

/// Resource limits of one build container.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--memory` (e.g. `8g`).
    pub memory: String,
    /// `--pids-limit`.
    pub pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: "8g".to_owned(),
            pids: 4096,
        }
    }
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
}

/// One build container.
struct DockerSandbox {
    docker: Docker,
    container: String,
    drv: Derivation,
    paths: KindPaths,
    env: BTreeMap<String, String>,
    log: PathBuf,
    strip: String,
    /// Whether the build's own copy of the source is made.
    copied: bool,
}

/// Fixed guest paths.
const WORK: &str = "/build";

impl Executor for DockerExecutor {
    fn open<'a>(&'a self, spec: &SessionSpec<'_>) -> Result<Box<dyn Sandbox + 'a>, Error> {
        let drv = spec.drv;
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
        if emulated && matches!(spec.build, Build::CargoPgrx { .. }) {
            return Err(Error::UnsupportedKind {
                name: drv.name.clone(),
                kind: "CargoPgrx in an emulated arm64 builder (cargo-pgrx cross-compiles: drop `emulate_arm64`)",
            });
        }
        let mut image = maker.ensure(drv.platform, &drv.build_packages, emulated)?;
        let cargo_pgrx = match spec.build {
            Build::CargoPgrx { pgrx, .. } => {
                image = maker.ensure_rust(&image, &drv.name, drv.platform)?;
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
        if cross {
            // pkg-config sees the target's .pc files only.
            env.insert(
                "PKG_CONFIG_LIBDIR".into(),
                "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig".into(),
            );
        }
        let container = format!(
            "azb-build-{}-{}-{}",
            name,
            drv.platform.oci_arch(),
            &tempfile_suffix(spec.work)
        );
        let user = format!("{BUILD_UID}:{BUILD_UID}");
        let pids = self.limits.pids.to_string();
        let cpus = spec.make_jobs.max(1).to_string();
        self.docker.output(&[
            "create",
            "--name",
            &container,
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
            &pids,
            "--cpus",
            &cpus,
            "--tmpfs",
            "/tmp:rw,exec,size=2g",
            "--workdir",
            WORK,
            "--entrypoint",
            "sleep",
            &image,
            "infinity",
        ])?;
        let sandbox = DockerSandbox {
            docker: self.docker.clone(),
            container,
            drv: drv.clone(),
            paths: KindPaths {
                dir: match &drv.subdir {
                    Some(sub) => Path::new(WORK).join(name).join(sub),
                    None => Path::new(WORK).join(name),
                },
                pg_config: Path::new(&prefix).join("bin/pg_config"),
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
            copied: false,
        };
        // From here on the container is removed when the sandbox is dropped.
        let input = spec.work.join("input.tar");
        let rust = match (&cargo_pgrx, &sandbox.paths.cargo) {
            (Some(binary), Some(setup)) => Some(RustInput {
                cargo_pgrx: binary,
                cargo_home: self.store.layout().cargo_home(),
                setup,
            }),
            _ => None,
        };
        write_input(&input, spec, &prefix, cc, rust)?;
        sandbox.copy_in(&input)?;
        sandbox.docker.output(&["start", &sandbox.container])?;
        Ok(Box::new(sandbox))
    }
}

/// The random part of the executor's scratch directory, so container names are unique.
fn tempfile_suffix(work: &Path) -> String {
    let text = work
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    text.rsplit('-').next().unwrap_or("x").to_lowercase()
}

/// The tar streamed into the container at `/`: the source at /build/src (root's,
/// read-only), the dependencies' artifacts over the toolchain, and the compiler wrapper.
fn write_input(
    path: &Path,
    spec: &SessionSpec<'_>,
    prefix: &str,
    cc: &str,
    rust: Option<RustInput<'_>>,
) -> Result<(), Error> {
    let file = err::File::create(path).map_err(|e| FsError::new("create", path, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    // Docker's tar reader knows no GNU sparse entries.
    tar.sparse(false);
    let io = |e| FsError::new("write", path, e);
    tar.append_dir_all("build/src", spec.source).map_err(io)?;
    let guest_prefix = prefix.trim_start_matches('/');
    for object in spec.deps {
        let mut archive = tar::Archive::new(crate::store::read_object(object)?);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let relative = entry.path().map_err(io)?.into_owned();
            let mut header = entry.header().clone();
            let target = Path::new(guest_prefix).join(&relative);
            tar.append_data(&mut header, &target, &mut entry)
                .map_err(io)?;
        }
    }
    let wrapper = format!(
        "#!/bin/sh\n# azb compiler wrapper: portable CPU flags.\n\
         for arg; do\n  shift\n  case \"$arg\" in\n    -march=native|-mtune=native|-mcpu=native) ;;\n    \
         *) set -- \"$@\" \"$arg\" ;;\n  esac\ndone\nexec {cc} \"$@\"\n"
    );
    append_script(&mut tar, Path::new("build/bin/cc"), &wrapper).map_err(io)?;
    if let Some(rust) = rust {
        rust.append(&mut tar).map_err(io)?;
    }
    let mut inner = tar.into_inner().map_err(io)?;
    inner.flush().map_err(io)?;
    Ok(())
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
        let guest = |path: &Path| path.strip_prefix("/").unwrap_or(path).to_owned();
        tar.append_path_with_name(self.cargo_pgrx, guest(&self.setup.cargo_pgrx))?;
        let maps = [
            (self.setup.rust.sysroot.clone(), "/rust".to_owned()),
            (self.setup.cargo_home.clone(), "/cargo".to_owned()),
        ];
        append_script(
            tar,
            &guest(&self.setup.rustc_wrapper),
            &rustc_wrapper_script(&maps),
        )?;
        let home = guest(&self.setup.cargo_home);
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

impl DockerSandbox {
    fn copy_in(&self, tar: &Path) -> Result<(), Error> {
        let mut file = err::File::open(tar).map_err(|e| FsError::new("open", tar, e))?;
        self.docker.copy_in(&self.container, |mut stdin| {
            std::io::copy(&mut file, &mut stdin).map(drop)
        })
    }

    /// `docker exec` of `argv` as the build user with the session's environment.
    fn exec(&self, cwd: &Path, argv: &[String]) -> std::process::Command {
        let mut command = self.docker.command(["exec", "--user"]);
        command.arg(format!("{BUILD_UID}:{BUILD_UID}"));
        command.arg("--workdir").arg(cwd);
        for (key, value) in &self.env {
            command.arg("--env").arg(format!("{key}={value}"));
        }
        command.arg(&self.container).args(argv);
        command
    }
}

impl Sandbox for DockerSandbox {
    fn paths(&self) -> &KindPaths {
        &self.paths
    }

    fn run(&mut self, step: &Step) -> Result<(), Error> {
        // Before the first step: the build's own writable copy of the source.
        if !self.copied {
            let work_tree = Path::new(WORK).join(self.drv.name.as_str());
            let prepare = format!(
                "mkdir '{0}' && cp -R /build/src/. '{0}/' && chmod -R u+w '{0}'",
                work_tree.display()
            );
            let argv = vec!["sh".to_owned(), "-c".to_owned(), prepare];
            let copy = Step {
                label: "copy source".into(),
                argv: argv.clone(),
                cwd: PathBuf::from(WORK),
            };
            run_logged(
                self.exec(Path::new(WORK), &argv),
                &copy,
                &self.drv,
                &self.log,
            )?;
            self.copied = true;
        }
        run_logged(self.exec(&step.cwd, &step.argv), step, &self.drv, &self.log)
    }

    fn finish(self: Box<Self>, into: &Path) -> Result<(), Error> {
        // Strip what was built for the platform; anything else is left for the driver to
        // refuse by its ELF machine.
        let strip = format!(
            "find /build/out -type f | while read -r f; do \
               [ \"$(head -c 4 \"$f\" | od -An -tx1 | tr -d ' \\n')\" = 7f454c46 ] || continue; \
               {} --strip-unneeded \"$f\" 2>/dev/null || true; \
             done",
            self.strip
        );
        let argv = vec!["sh".to_owned(), "-c".to_owned(), strip];
        let step = Step {
            label: "strip".into(),
            argv: argv.clone(),
            cwd: PathBuf::from(WORK),
        };
        run_logged(
            self.exec(Path::new(WORK), &argv),
            &step,
            &self.drv,
            &self.log,
        )?;
        let source = format!("{}:{}/out", self.container, WORK);
        let mut child = self
            .docker
            .command(["cp", &source, "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::DockerMissing {
                program: self.docker.program.clone(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let unpacked = unpack_out(stdout, into);
        let output = child
            .wait_with_output()
            .map_err(|source| Error::DockerMissing {
                program: self.docker.program.clone(),
                source,
            })?;
        // An unpack that failed closed the pipe under docker cp: its own error says more.
        if unpacked.is_ok() && !output.status.success() {
            return Err(Error::Docker {
                command: format!("cp {source} -"),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        unpacked
    }
}

/// Unpacks `docker cp`'s tar of /build/out (entries `out/...`) and moves its `out` to
/// `into`. tar refuses entries that would land outside the directory, through `..` or a
/// symlink the build planted.
fn unpack_out(mut stream: impl std::io::Read, into: &Path) -> Result<(), Error> {
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
    Ok(())
}

impl Drop for DockerSandbox {
    fn drop(&mut self) {
        let _ = self
            .docker
            .command(["rm", "--force", &self.container])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
        unpack_out(&mut counted, &into).unwrap();
        assert_eq!(counted.1, bytes.len());
        assert_eq!(crate::fs::err::read(into.join("lib/x.so")).unwrap(), b"elf");
    }
}
