//! The cargo-pgrx build kind.
//!
//! Before any build starts, with network, [`prepare`] installs the recipe's cargo-pgrx
//! version into the store (`install`) and fetches the crates the source's Cargo.lock pins
//! (`crates`); both run the network phases' cargo (`cargo`). The build itself ([`steps`])
//! runs `cargo pgrx package` offline and `--locked` against the toolchain view's
//! pg_config, cross-compiling to the platform's Rust target when it is not this machine's,
//! with a rustc wrapper that maps every build path to a fixed one.
//!
//! Owns cargo and cargo-pgrx invocations; never decides what a derivation is.

mod cargo;
mod crates;
mod install;

use std::path::{Path, PathBuf};

use super::Error;
use super::executor::Step;
use super::host::{map_flags, write_script};
use super::kind::KindPaths;
use super::rust::{GUEST_SYSROOT, RustToolchain, host_platform, rust_for, rust_target};
use crate::drv::Planned;
use crate::fetch::Fetcher;
use crate::recipe::{Build, Platform, RecipeName};
use crate::store::Store;

pub use install::installed_cargo_pgrx;

use crates::Checkout;
use install::install_cargo_pgrx;

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
    use std::process::Command;

    #[test]
    fn rustc_wrapper_appends_the_maps_after_the_build_flags() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("rustc-wrapper");
        let script = rustc_wrapper_script(&[
            (PathBuf::from("/w"), "/build".into()),
            (PathBuf::from("/w/src"), "/build/x".into()),
        ]);
        write_script(&wrapper, &script).unwrap();
        let out = crate::fs::output_of_written_program(Command::new(&wrapper).args([
            "echo",
            "--crate-name",
            "a b",
        ]));
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
