//! Build kinds: the steps each kind runs. Steps are plain commands, so the same list can
//! run on the host or inside a builder container.

use std::path::{Path, PathBuf};

use super::executor::Step;
use super::pgrx::CargoSetup;
use crate::recipe::Build;

/// Paths a build kind needs to know, as the steps see them (guest paths): the host
/// executor's are directories of this machine, a builder container's are fixed.
#[derive(Debug)]
pub struct KindPaths {
    /// Where to build (source root or its subdir).
    pub dir: PathBuf,
    /// The toolchain's pg_config.
    pub pg_config: PathBuf,
    /// The compiler (wrapper).
    pub cc: PathBuf,
    /// Where `make install` writes (DESTDIR).
    pub destdir: PathBuf,
    /// Parallel make jobs.
    pub make_jobs: usize,
    /// Where PostgreSQL lives in the image (for the run path of shared objects).
    pub image_prefix: String,
    /// The toolchain's install prefix (what `--prefix` must be, so that files land under
    /// DESTDIR + prefix and normalise into the artifact layout).
    pub prefix: PathBuf,
    /// An empty directory for out-of-tree builds (cmake, meson).
    pub out_of_tree: PathBuf,
    /// What a cargo-pgrx build needs (None for the other kinds and executors without it).
    pub cargo: Option<CargoSetup>,
}

fn step(label: &str, cwd: &Path, argv: impl IntoIterator<Item = String>) -> Step {
    Step {
        label: label.to_owned(),
        argv: argv.into_iter().collect(),
        cwd: cwd.to_owned(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The steps of `build`; None for kinds the host executor cannot run (builtins, which
/// ship with PostgreSQL, and cargo-pgrx without its [`CargoSetup`]).
pub fn steps(build: &Build, paths: &KindPaths) -> Option<Vec<Step>> {
    match build {
        Build::Pgxs { flags } => {
            let common = |extra: &[String]| {
                let mut argv = vec![
                    "make".to_owned(),
                    format!("-j{}", paths.make_jobs),
                    "USE_PGXS=1".to_owned(),
                    format!("PG_CONFIG={}", paths.pg_config.display()),
                    format!("CC={}", paths.cc.display()),
                    // No LLVM bitcode in artifacts (and no clang needed to build).
                    "with_llvm=no".to_owned(),
                    // The run path points where PostgreSQL is in the image, not at the build.
                    format!("rpathdir={}/lib", paths.image_prefix),
                ];
                argv.extend(flags.iter().cloned());
                argv.extend(extra.iter().cloned());
                argv
            };
            Some(vec![
                Step {
                    label: "make".into(),
                    argv: common(&[]),
                    cwd: paths.dir.to_owned(),
                },
                Step {
                    label: "make install".into(),
                    argv: common(&[
                        "install".into(),
                        format!("DESTDIR={}", paths.destdir.display()),
                    ]),
                    cwd: paths.dir.to_owned(),
                },
            ])
        }
        Build::Make { flags } => {
            let vars = vec![
                format!("PG_CONFIG={}", paths.pg_config.display()),
                format!("CC={}", paths.cc.display()),
                format!("prefix={}", paths.prefix.display()),
                format!("PREFIX={}", paths.prefix.display()),
            ];
            let make = [
                strings(&["make", &format!("-j{}", paths.make_jobs)]),
                vars,
                flags.clone(),
            ]
            .concat();
            let install = [
                make.clone(),
                vec![
                    "install".to_owned(),
                    format!("DESTDIR={}", paths.destdir.display()),
                ],
            ]
            .concat();
            Some(vec![
                step("make", &paths.dir, make),
                step("make install", &paths.dir, install),
            ])
        }
        Build::Autotools { flags } => {
            let configure = [
                strings(&[
                    "sh",
                    "-c",
                    "[ -x ./configure ] || autoreconf -fi; exec ./configure \"$@\"",
                    "configure",
                ]),
                vec![
                    format!("--prefix={}", paths.prefix.display()),
                    format!("--with-pgconfig={}", paths.pg_config.display()),
                    format!("CC={}", paths.cc.display()),
                ],
                flags.clone(),
            ]
            .concat();
            let make = strings(&["make", &format!("-j{}", paths.make_jobs)]);
            let install = strings(&[
                "make",
                "install",
                &format!("DESTDIR={}", paths.destdir.display()),
            ]);
            Some(vec![
                step("configure", &paths.dir, configure),
                step("make", &paths.dir, make),
                step("make install", &paths.dir, install),
            ])
        }
        Build::Cmake { flags } => {
            let build = paths.out_of_tree.display().to_string();
            let configure = [
                strings(&[
                    "cmake",
                    "-S",
                    &paths.dir.display().to_string(),
                    "-B",
                    &build,
                    "-DCMAKE_BUILD_TYPE=Release",
                ]),
                vec![
                    format!("-DCMAKE_C_COMPILER={}", paths.cc.display()),
                    format!("-DCMAKE_INSTALL_PREFIX={}", paths.prefix.display()),
                    format!("-DPG_CONFIG={}", paths.pg_config.display()),
                ],
                flags.clone(),
            ]
            .concat();
            let compile = strings(&[
                "cmake",
                "--build",
                &build,
                "-j",
                &paths.make_jobs.to_string(),
            ]);
            let install = strings(&[
                "env",
                &format!("DESTDIR={}", paths.destdir.display()),
                "cmake",
                "--install",
                &build,
            ]);
            Some(vec![
                step("cmake", &paths.dir, configure),
                step("cmake --build", &paths.dir, compile),
                step("cmake --install", &paths.dir, install),
            ])
        }
        Build::Meson { flags } => {
            let build = paths.out_of_tree.display().to_string();
            let setup = [
                strings(&[
                    "env",
                    &format!("CC={}", paths.cc.display()),
                    &format!("PG_CONFIG={}", paths.pg_config.display()),
                ]),
                strings(&[
                    "meson",
                    "setup",
                    &build,
                    &paths.dir.display().to_string(),
                    "--buildtype=release",
                ]),
                vec![format!("--prefix={}", paths.prefix.display())],
                flags.clone(),
            ]
            .concat();
            let compile = strings(&[
                "meson",
                "compile",
                "-C",
                &build,
                "-j",
                &paths.make_jobs.to_string(),
            ]);
            let install = strings(&[
                "env",
                &format!("DESTDIR={}", paths.destdir.display()),
                "meson",
                "install",
                "-C",
                &build,
            ]);
            Some(vec![
                step("meson setup", &paths.dir, setup),
                step("meson compile", &paths.dir, compile),
                step("meson install", &paths.dir, install),
            ])
        }
        Build::Sql => {
            // Control and SQL files of the build directory (and its sql/), as they are.
            let script = "set -e; dest=\"$DESTDIR$(\"$PG_CONFIG\" --sharedir)/extension\"; mkdir -p \"$dest\"; \
                          found=0; for f in *.control *.sql sql/*.sql; do [ -f \"$f\" ] || continue; cp \"$f\" \"$dest/\"; found=1; done; \
                          [ \"$found\" = 1 ] || { echo 'no .control or .sql files here' >&2; exit 1; }";
            let argv = [
                strings(&[
                    "env",
                    &format!("DESTDIR={}", paths.destdir.display()),
                    &format!("PG_CONFIG={}", paths.pg_config.display()),
                ]),
                strings(&["sh", "-c", script]),
            ]
            .concat();
            Some(vec![step("copy sql", &paths.dir, argv)])
        }
        Build::Script { script } => {
            let argv = [
                strings(&[
                    "env",
                    &format!("DESTDIR={}", paths.destdir.display()),
                    &format!("PG_CONFIG={}", paths.pg_config.display()),
                    &format!("CC={}", paths.cc.display()),
                    &format!("PREFIX={}", paths.prefix.display()),
                ]),
                strings(&["sh", "-ec", script]),
            ]
            .concat();
            Some(vec![step("script", &paths.dir, argv)])
        }
        Build::CargoPgrx {
            features,
            no_default_features,
            ..
        } => paths
            .cargo
            .as_ref()
            .map(|setup| super::pgrx::steps(setup, features, *no_default_features, paths)),
        Build::Builtin => None,
    }
}
