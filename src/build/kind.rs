//! Build kinds: the steps each kind runs. Steps are plain commands, so the same list can
//! run on the host or inside a builder container.

use std::path::Path;

use super::host::Step;
use crate::recipe::Build;

/// Paths a build kind needs to know.
#[derive(Debug)]
pub struct KindPaths<'a> {
    /// Where to build (source root or its subdir).
    pub dir: &'a Path,
    /// The toolchain view's pg_config.
    pub pg_config: &'a Path,
    /// The compiler wrapper.
    pub cc: &'a Path,
    /// Where `make install` writes (DESTDIR).
    pub destdir: &'a Path,
    /// Parallel make jobs.
    pub make_jobs: usize,
    /// Where PostgreSQL lives in the image (for the run path of shared objects).
    pub image_prefix: &'a str,
}

/// The steps of `build`; None for kinds the host executor cannot run yet.
pub fn steps(build: &Build, paths: &KindPaths<'_>) -> Option<Vec<Step>> {
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
        _ => None,
    }
}
