//! The cargo-pgrx build kind.
//!
//! Before any build starts, with network, [`prepare`] installs the recipe's cargo-pgrx
//! version into the store's `tools/` (`cargo install --locked`, once per version) and
//! fetches the crates the source's Cargo.lock pins into the store's cargo home (`cargo
//! fetch --locked`, offline first, so a warm store needs no network). The build itself
//! ([`steps`]) runs `cargo pgrx package` offline and `--locked` against the toolchain view's
//! pg_config, cross-compiling to the platform's Rust target when it is not this machine's,
//! with a rustc wrapper that maps every build path to a fixed one.
//!
//! Owns cargo and cargo-pgrx invocations; never decides what a derivation is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;
use super::executor::{Step, log_tail};
use super::host::{map_flags, write_script};
use super::kind::KindPaths;
use super::rust::{GUEST_SYSROOT, RustToolchain, host_platform, rust_for, rust_target};
use crate::drv::Planned;
use crate::fetch::Fetcher;
use crate::fs::{FsError, LockFile, err};
use crate::recipe::{Build, Platform, RecipeName};
use crate::store::Store;

/// Environment variables the network phases (cargo install, cargo fetch) pass through from
/// azb's own environment: proxies, certificates and cargo's network and registry settings.
const NETWORK_PASSTHROUGH: [&str; 9] = [
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
const NETWORK_PASSTHROUGH_PREFIXES: [&str; 4] = [
    "CARGO_HTTP_",
    "CARGO_NET_",
    "CARGO_REGISTRIES_",
    "CARGO_SOURCE_",
];

/// A cargo-pgrx version is a plain version (`0.16.1`, the rule `recipe check` applies);
/// anything else could escape the tools directory or mean something else to cargo.
fn check_version(name: &RecipeName, version: &str) -> Result<(), Error> {
    if crate::recipe::is_version(version) {
        Ok(())
    } else {
        Err(Error::BadToolVersion {
            name: name.clone(),
            tool: "cargo-pgrx",
            version: version.to_owned(),
        })
    }
}

/// `tools/cargo-pgrx-<version>/bin/cargo-pgrx` in the store.
pub fn cargo_pgrx_path(store: &Store, version: &str) -> PathBuf {
    store
        .layout()
        .tool("cargo-pgrx", version)
        .join("bin/cargo-pgrx")
}

/// Makes everything a cargo-pgrx build of `planned` needs present, with network: the
/// Rust target, the recipe's cargo-pgrx and the locked crates. Nothing for other kinds.
/// The source is checked first (a Cargo.toml and a Cargo.lock), so a bad one fails before
/// minutes of `cargo install`. With `crates` false, the crates are known to be fetched
/// already (same source).
pub fn prepare(
    store: &Store,
    fetcher: &Fetcher,
    planned: &Planned<'_>,
    crates: bool,
) -> Result<(), Error> {
    let recipe = &planned.recipe.recipe;
    let Build::CargoPgrx { pgrx, .. } = &recipe.build else {
        return Ok(());
    };
    let name = &planned.drv.name;
    check_version(name, pgrx)?;
    let rust = rust_for(name, planned.drv.platform)?;
    let checkout = if crates {
        Some(Checkout::new(store, fetcher, planned)?)
    } else {
        None
    };
    install_cargo_pgrx(store, rust, name, pgrx)?;
    match checkout {
        Some(checkout) => checkout.fetch_crates(store, rust, name),
        None => Ok(()),
    }
}

/// A cargo command for the network phases: the toolchain's cargo, the store's cargo home,
/// and of azb's environment only what reaching a registry needs.
fn cargo_command(store: &Store, rust: &RustToolchain, work: &Path) -> Command {
    let mut cmd = Command::new(rust.cargo());
    cmd.env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin",
                rust.sysroot.join("bin").display()
            ),
        )
        .env("HOME", work)
        .env("TMPDIR", work)
        .env("CARGO_HOME", store.layout().cargo_home())
        .env("RUSTC", rust.rustc())
        .env("CARGO_TERM_COLOR", "never")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    for (key, value) in std::env::vars_os() {
        let Some(key_text) = key.to_str() else {
            continue;
        };
        if NETWORK_PASSTHROUGH.contains(&key_text)
            || NETWORK_PASSTHROUGH_PREFIXES
                .iter()
                .any(|p| key_text.starts_with(p))
        {
            cmd.env(&key, value);
        }
    }
    cmd
}

/// How a command of a network phase failed.
struct Failed {
    /// Its exit status, or why it could not start.
    status: String,
    /// The last lines of its output, indented.
    tail: String,
}

/// Runs `cmd` with its output in `log`; the inner Err says how it failed.
fn run_logged(mut cmd: Command, log: &Path) -> Result<Result<(), Failed>, FsError> {
    let file = err::File::create(log).map_err(|e| FsError::new("create log", log, e))?;
    let file = file.into_parts().0;
    let stderr = file
        .try_clone()
        .map_err(|e| FsError::new("create log", log, e))?;
    cmd.stdout(file).stderr(stderr);
    let program = cmd.get_program().to_string_lossy().into_owned();
    Ok(match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Failed {
            status: status.to_string(),
            tail: log_tail(log, 25),
        }),
        Err(e) => Err(Failed {
            status: format!("cannot run `{program}`: {e}"),
            tail: String::new(),
        }),
    })
}

/// A private directory under the store's tmp/.
fn scratch(store: &Store, prefix: &str) -> Result<tempfile::TempDir, FsError> {
    let tmp = store.layout().tmp();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .map_err(|e| FsError::new("create a directory in", &tmp, e))
}

/// Installs cargo-pgrx `version` into the store's tools/ unless it is there: `cargo
/// install --locked` into a private root, renamed into place under a lock.
fn install_cargo_pgrx(
    store: &Store,
    rust: &RustToolchain,
    name: &RecipeName,
    version: &str,
) -> Result<PathBuf, Error> {
    let bin = cargo_pgrx_path(store, version);
    if bin.is_file() {
        return Ok(bin);
    }
    let _lock = LockFile::acquire(
        &store.layout().lock(&format!("tool-cargo-pgrx-{version}")),
        &format!("the install of cargo-pgrx {version}"),
    )?;
    if bin.is_file() {
        return Ok(bin);
    }
    tracing::info!(version, "installing cargo-pgrx");
    let work = scratch(store, &format!("cargo-pgrx-{version}-"))?;
    let root = work.path().join("root");
    let mut cmd = cargo_command(store, rust, work.path());
    cmd.env("CARGO_TARGET_DIR", work.path().join("target"))
        .args(["install", "--locked", "--root"])
        .arg(&root)
        .args(["--version", &format!("={version}"), "cargo-pgrx"]);
    let log = work.path().join("install.log");
    if let Err(failed) = run_logged(cmd, &log)? {
        return Err(Error::ToolInstall {
            name: name.clone(),
            tool: "cargo-pgrx",
            version: version.to_owned(),
            status: failed.status,
            tail: failed.tail,
        });
    }
    for bookkeeping in [".crates.toml", ".crates2.json"] {
        let path = root.join(bookkeeping);
        if path.exists() {
            err::remove_file(&path).map_err(|e| FsError::new("remove", &path, e))?;
        }
    }
    let target = store.layout().tool("cargo-pgrx", version);
    let parent = target.parent().unwrap_or(&target);
    err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    err::rename(&root, &target).map_err(|e| FsError::new("move into place", &target, e))?;
    Ok(bin)
}

/// The pinned source exported for `cargo fetch`, checked to be a locked Cargo project.
struct Checkout {
    /// Removed when dropped.
    work: tempfile::TempDir,
    /// The package's directory.
    dir: PathBuf,
}

impl Checkout {
    fn new(store: &Store, fetcher: &Fetcher, planned: &Planned<'_>) -> Result<Self, Error> {
        let drv = &planned.drv;
        let recipe = &planned.recipe.recipe;
        let work = scratch(store, &format!("crates-{}-", drv.name))?;
        let src = work.path().join("src");
        fetcher
            .export(recipe.url(), drv.commit, &src)
            .map_err(|source| Error::Fetch {
                name: drv.name.clone(),
                source,
            })?;
        let dir = match &drv.subdir {
            Some(sub) => src.join(sub),
            None => src.clone(),
        };
        let shown = drv.subdir.clone().unwrap_or_else(|| ".".to_owned());
        if !dir.join("Cargo.toml").is_file() {
            return Err(Error::CargoProject {
                name: drv.name.clone(),
                dir: shown,
                missing: "Cargo.toml",
                hint: "a cargo-pgrx recipe builds a Cargo package: point `subdir` at the directory holding the extension's Cargo.toml".into(),
            });
        }
        // The package's own Cargo.lock, or its workspace's.
        let locked = dir
            .ancestors()
            .take_while(|d| d.starts_with(&src))
            .any(|d| d.join("Cargo.lock").is_file());
        if !locked {
            return Err(Error::CargoProject {
                name: drv.name.clone(),
                dir: shown,
                missing: "Cargo.lock",
                hint: "builds are offline and `--locked`, so the source must pin its crates: commit a Cargo.lock upstream (`cargo generate-lockfile`) and re-pin the recipe".into(),
            });
        }
        Ok(Self { work, dir })
    }

    /// Fetches the crates the Cargo.lock pins into the store's cargo home: offline first
    /// (all there already), else from the registry.
    fn fetch_crates(
        self,
        store: &Store,
        rust: &RustToolchain,
        name: &RecipeName,
    ) -> Result<(), Error> {
        let manifest = self.dir.join("Cargo.toml");
        let log = self.work.path().join("fetch.log");
        let fetch = |offline: bool| {
            let mut cmd = cargo_command(store, rust, self.work.path());
            cmd.current_dir(&self.dir)
                .args(["fetch", "--locked", "--manifest-path"])
                .arg(&manifest);
            if offline {
                cmd.arg("--offline");
            }
            run_logged(cmd, &log)
        };
        if fetch(true)?.is_ok() {
            return Ok(());
        }
        tracing::info!(%name, "fetching crates");
        fetch(false)?.map_err(|failed| Error::CrateFetch {
            name: name.clone(),
            status: failed.status,
            tail: failed.tail,
        })
    }
}

/// What a cargo-pgrx build needs beside [`KindPaths`].
#[derive(Debug)]
pub struct CargoSetup {
    /// The cargo-pgrx binary.
    pub cargo_pgrx: PathBuf,
    /// The store's cargo home (crates fetched before the build).
    pub cargo_home: PathBuf,
    /// The Rust toolchain.
    pub rust: RustToolchain,
    /// Where cargo builds (outside the source tree).
    pub target_dir: PathBuf,
    /// PGRX_HOME, private to the build.
    pub pgrx_home: PathBuf,
    /// The rustc wrapper that maps build paths.
    pub rustc_wrapper: PathBuf,
    /// The Rust target when cross-compiling (None for a native build).
    pub cross: Option<Cross>,
    /// The Rust target of the platform.
    pub target: &'static str,
    /// The directory holding the compiler wrapper (first on PATH).
    pub bin: PathBuf,
}

/// A cross build: this machine's Rust target and C compiler for what runs here (build
/// scripts, proc macros, pgrx's SQL generator), and clang's target for bindgen.
#[derive(Debug)]
pub struct Cross {
    /// This machine's Rust target.
    pub host_target: &'static str,
    /// The GNU triple of the platform (clang's `--target`).
    pub gnu_triple: &'static str,
}

impl Cross {
    /// The cross build for `platform` on a builder of `native` (None when they match).
    fn between(native: Option<Platform>, platform: Platform) -> Option<Self> {
        match native {
            Some(native) if native == platform => None,
            native => Some(Cross {
                host_target: native.map_or("x86_64-unknown-linux-gnu", rust_target),
                gnu_triple: platform.gnu_triple(),
            }),
        }
    }
}

impl CargoSetup {
    /// Prepares a cargo-pgrx build of `name` on this machine, in `work`: finds the
    /// toolchain and the installed cargo-pgrx `version`, and writes the rustc wrapper into
    /// `bin` with `maps` (from, to) applied in order (later ones win, as with rustc).
    pub fn on_host(
        store: &Store,
        name: &RecipeName,
        platform: Platform,
        version: &str,
        work: &Path,
        bin: &Path,
        maps: &[(PathBuf, String)],
    ) -> Result<Self, Error> {
        let rust = rust_for(name, platform)?.clone();
        let cargo_pgrx = installed_cargo_pgrx(store, name, version)?;
        let rustc_wrapper = bin.join("rustc-wrapper");
        let mut maps = maps.to_vec();
        maps.insert(0, (rust.sysroot.clone(), "/rust".to_owned()));
        write_script(&rustc_wrapper, &rustc_wrapper_script(&maps))?;
        Ok(Self {
            cargo_pgrx,
            cargo_home: store.layout().cargo_home(),
            rust,
            target_dir: work.join("target"),
            pgrx_home: work.join("pgrx-home"),
            rustc_wrapper,
            cross: Cross::between(host_platform(), platform),
            target: rust_target(platform),
            bin: bin.to_owned(),
        })
    }

    /// A cargo-pgrx build in an amd64 builder container, at the container's fixed paths
    /// under `work` (the toolchain at [`GUEST_SYSROOT`]); the executor puts cargo-pgrx,
    /// the crates and the rustc wrapper ([`rustc_wrapper_script`]) there.
    pub fn in_builder(platform: Platform, work: &Path) -> Self {
        let bin = work.join("bin");
        Self {
            cargo_pgrx: work.join("tools/cargo-pgrx"),
            cargo_home: work.join("cargo"),
            rust: RustToolchain {
                sysroot: PathBuf::from(GUEST_SYSROOT),
            },
            target_dir: work.join("target"),
            pgrx_home: work.join("pgrx-home"),
            rustc_wrapper: bin.join("rustc-wrapper"),
            cross: Cross::between(Some(Platform::Amd64), platform),
            target: rust_target(platform),
            bin,
        }
    }
}

/// The installed cargo-pgrx `version` of the store (put there by [`prepare`]).
pub fn installed_cargo_pgrx(
    store: &Store,
    name: &RecipeName,
    version: &str,
) -> Result<PathBuf, Error> {
    check_version(name, version)?;
    let cargo_pgrx = cargo_pgrx_path(store, version);
    if cargo_pgrx.is_file() {
        Ok(cargo_pgrx)
    } else {
        Err(Error::ToolMissing {
            name: name.clone(),
            tool: "cargo-pgrx",
            version: version.to_owned(),
            path: cargo_pgrx,
        })
    }
}

/// The rustc wrapper (cargo's RUSTC_WRAPPER): runs rustc with `--remap-path-prefix` for
/// each map after the build's own flags, so the maps win over a project's and no path of
/// the build machine reaches an artifact (file names in panic messages, debug info).
pub fn rustc_wrapper_script(maps: &[(PathBuf, String)]) -> String {
    format!(
        "#!/bin/sh\n# azb rustc wrapper: fixed paths.\nrustc=$1\nshift\nexec \"$rustc\" \"$@\"{}\n",
        map_flags(maps, "--remap-path-prefix")
    )
}

/// `CARGO_TARGET_<TRIPLE>_LINKER`-style variable names.
fn target_var(prefix: &str, target: &str, suffix: &str) -> String {
    format!(
        "{prefix}{}{suffix}",
        target.to_uppercase().replace('-', "_")
    )
}

/// The steps of a cargo-pgrx build: `cargo pgrx package` with the view's pg_config,
/// installing into DESTDIR + the view's prefix.
pub fn steps(
    setup: &CargoSetup,
    features: &[String],
    no_default_features: bool,
    paths: &KindPaths,
) -> Vec<Step> {
    let cc = paths.cc.display().to_string();
    let mut vars: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!(
                "{}:{}:/usr/local/bin:/usr/bin:/bin",
                setup.bin.display(),
                setup.rust.sysroot.join("bin").display()
            ),
        ),
        ("CARGO_HOME".into(), setup.cargo_home.display().to_string()),
        ("CARGO".into(), setup.rust.cargo().display().to_string()),
        ("RUSTC".into(), setup.rust.rustc().display().to_string()),
        (
            "RUSTC_WRAPPER".into(),
            setup.rustc_wrapper.display().to_string(),
        ),
        (
            "CARGO_TARGET_DIR".into(),
            setup.target_dir.display().to_string(),
        ),
        ("CARGO_NET_OFFLINE".into(), "true".into()),
        ("CARGO_INCREMENTAL".into(), "0".into()),
        ("CARGO_BUILD_JOBS".into(), paths.make_jobs.to_string()),
        ("CARGO_TERM_COLOR".into(), "never".into()),
        ("NO_COLOR".into(), "1".into()),
        ("PGRX_HOME".into(), setup.pgrx_home.display().to_string()),
        (
            "PGRX_PG_CONFIG_PATH".into(),
            paths.pg_config.display().to_string(),
        ),
        // cargo-pgrx passes these to every cargo build it runs.
        ("PGRX_BUILD_FLAGS".into(), "--locked".into()),
        (
            target_var("CARGO_TARGET_", setup.target, "_LINKER"),
            cc.clone(),
        ),
        (format!("CC_{}", setup.target.replace('-', "_")), cc.clone()),
    ];
    if let Some(cross) = &setup.cross {
        // What runs here (build scripts, proc macros, the SQL generator) links and
        // compiles with this machine's compiler, not the wrapper of the target's.
        vars.push((
            target_var("CARGO_TARGET_", cross.host_target, "_LINKER"),
            "gcc".into(),
        ));
        vars.push((
            format!("CC_{}", cross.host_target.replace('-', "_")),
            "gcc".into(),
        ));
        vars.push((
            format!(
                "BINDGEN_EXTRA_CLANG_ARGS_{}",
                setup.target.replace('-', "_")
            ),
            format!("--target={}", cross.gnu_triple),
        ));
    }
    let mut argv = vec!["env".to_owned()];
    argv.extend(vars.into_iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend([
        setup.cargo_pgrx.display().to_string(),
        "pgrx".into(),
        "package".into(),
        "--pg-config".into(),
        paths.pg_config.display().to_string(),
        "--out-dir".into(),
        paths.destdir.display().to_string(),
    ]);
    if setup.cross.is_some() {
        argv.extend(["--target".to_owned(), setup.target.to_owned()]);
    }
    if no_default_features {
        argv.push("--no-default-features".into());
    }
    for feature in features {
        argv.extend(["--features".to_owned(), feature.clone()]);
    }
    vec![Step {
        label: "cargo pgrx package".into(),
        argv,
        cwd: paths.dir.to_owned(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_plain() {
        let name: RecipeName = "x".parse().unwrap();
        for good in ["0.16.1", "0.12.0-beta.1", "1.0.0+local"] {
            assert!(check_version(&name, good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../0.16.1",
            "0.16/../../x",
            "latest",
            "=0.16.1",
            "0.16.1 --force",
        ] {
            assert!(check_version(&name, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rustc_wrapper_appends_the_maps_after_the_build_flags() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("rustc-wrapper");
        let script = rustc_wrapper_script(&[
            (PathBuf::from("/w"), "/build".into()),
            (PathBuf::from("/w/src"), "/build/x".into()),
        ]);
        write_script(&wrapper, &script).unwrap();
        // Through sh: exec'ing a file just written races with other test threads' forks
        // (ETXTBSY).
        let out = Command::new("sh")
            .arg(&wrapper)
            .args(["echo", "--crate-name", "a b"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "--crate-name a b --remap-path-prefix=/w=/build --remap-path-prefix=/w/src=/build/x\n"
        );
    }

    #[test]
    fn target_variables_use_cargo_spelling() {
        assert_eq!(
            target_var("CARGO_TARGET_", "aarch64-unknown-linux-gnu", "_LINKER"),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"
        );
    }
}
