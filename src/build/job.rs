//! Building one derivation: export the pinned source, prepare the toolchain view with the
//! dependencies' artifacts, run the kind's steps in a session, normalize, and hand the
//! artifact to the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::host::{Session, write_cc_wrapper};
use super::kind::{KindPaths, steps};
use super::pgrx::CargoSetup;
use super::tree::{link_tree, normalize, unpack_over};
use super::{Error, HostToolchain, Reporter};
use crate::drv::Planned;
use crate::fetch::Fetcher;
use crate::fs::{FsError, err};
use crate::recipe::Build;
use crate::store::{BuildRecord, Realisation, Store};

/// Everything a build needs besides the derivation.
pub struct JobContext<'a> {
    /// The store (for tmp/, logs and the result).
    pub store: &'a Store,
    /// Source access (the source is already in its mirror).
    pub fetcher: &'a Fetcher,
    /// The toolchain of the derivation's platform.
    pub toolchain: &'a HostToolchain,
    /// Its identity (as in the derivation).
    pub builder: &'a str,
    /// Parallel make jobs per build.
    pub make_jobs: usize,
    /// Whether builds may reach the network.
    pub network: bool,
    /// Where events go.
    pub reporter: &'a dyn Reporter,
}

/// Builds `planned` with its dependencies' artifact tars (transitive, in order) laid into
/// the toolchain view, and stores the result.
pub fn build(
    ctx: &JobContext<'_>,
    planned: &Planned<'_>,
    deps: &[&[u8]],
) -> Result<Realisation, Error> {
    let started = Instant::now();
    let drv = &planned.drv;
    let recipe = &planned.recipe.recipe;
    let tmp = ctx.store.layout().tmp();
    let work = tempfile::Builder::new()
        .prefix(&format!("build-{}-", drv.name))
        .tempdir_in(&tmp)
        .map_err(|e| FsError::new("create a build directory in", &tmp, e))?;
    let work = work.path();
    let dir = |name: &str| -> Result<std::path::PathBuf, Error> {
        let path = work.join(name);
        err::create_dir_all(&path).map_err(|e| FsError::new("create directory", &path, e))?;
        Ok(path)
    };
    let (src, pg, bin, destdir, home, scratch) = (
        dir("src")?,
        work.join("pg"),
        dir("bin")?,
        dir("out")?,
        dir("home")?,
        dir("tmp")?,
    );
    let hash = planned.hash;
    let log = ctx.store.layout().log(&hash);
    err::write(
        &log,
        format!(
            "azb build of {} for {} (derivation {hash})\n",
            drv.name, drv.platform
        ),
    )
    .map_err(|e| FsError::new("write log", &log, e))?;

    ctx.reporter.build_step(&hash, "export source");
    let source_time = ctx
        .fetcher
        .export(recipe.url(), drv.commit, &src)
        .map_err(|source| Error::Fetch {
            name: drv.name.clone(),
            source,
        })?;
    ctx.reporter.build_step(&hash, "toolchain");
    link_tree(&ctx.toolchain.prefix, &pg)?;
    for tar in deps {
        unpack_over(tar, &pg)?;
    }
    let cc = bin.join("cc");
    let fixed_prefix = format!("/usr/lib/postgresql/{}", drv.pg_major);
    // Later maps win (gcc and rustc alike): the whole work directory first, then the
    // places that have names of their own.
    let mut maps = vec![
        (work.to_owned(), "/build".to_owned()),
        (src.clone(), format!("/build/{}", drv.name)),
        (pg.clone(), fixed_prefix.clone()),
    ];
    let cargo = match &recipe.build {
        Build::CargoPgrx { pgrx, .. } => {
            maps.push((ctx.store.layout().cargo_home(), "/cargo".to_owned()));
            Some(CargoSetup::new(
                ctx.store,
                &drv.name,
                drv.platform,
                pgrx,
                work,
                &bin,
                &maps,
            )?)
        }
        _ => None,
    };
    write_cc_wrapper(&cc, &ctx.toolchain.cc, &maps)?;

    let build_dir = match &drv.subdir {
        Some(sub) => src.join(sub),
        None => src.clone(),
    };
    let env: BTreeMap<String, String> = [
        (
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        ),
        ("HOME", home.display().to_string()),
        ("TMPDIR", scratch.display().to_string()),
        ("LANG", "C".into()),
        ("LC_ALL", "C".into()),
        ("TZ", "UTC".into()),
        ("SOURCE_DATE_EPOCH", source_time.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let session = Session {
        name: drv.name.clone(),
        env,
        log: log.clone(),
        network: ctx.network,
    };
    let paths = KindPaths {
        dir: &build_dir,
        pg_config: &pg.join("bin/pg_config"),
        cc: &cc,
        destdir: &destdir,
        make_jobs: ctx.make_jobs,
        image_prefix: &fixed_prefix,
        prefix: &pg,
        out_of_tree: &work.join("out-of-tree"),
        cargo: cargo.as_ref(),
    };
    let Some(steps) = steps(&recipe.build, &paths) else {
        return Err(Error::UnsupportedKind {
            name: drv.name.clone(),
            kind: recipe.build.kind_name(),
        });
    };
    for step in steps {
        ctx.reporter.build_step(&hash, &step.label);
        session.run(&step, ctx.toolchain)?;
    }

    ctx.reporter.build_step(&hash, "normalize");
    let artifact = work.join("artifact");
    let mut roots = vec![src.clone()];
    if build_dir != src {
        roots.push(build_dir.clone());
    }
    normalize(&drv.name, ctx.toolchain, &destdir, &pg, &roots, &artifact)?;
    refuse_build_paths(&drv.name, &artifact, work)?;
    if is_empty(&artifact)? {
        return Err(Error::Empty {
            name: drv.name.clone(),
            platform: drv.platform,
            log,
        });
    }
    ctx.reporter.build_step(&hash, "store");
    let record = BuildRecord {
        builder: ctx.builder.to_owned(),
        source_time,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    Ok(ctx.store.add_artifact(drv, &artifact, record)?)
}

/// Fails when any artifact file mentions the build directory: such a path differs on
/// every build, so the artifact would not be reproducible (and would point nowhere).
fn refuse_build_paths(
    name: &crate::recipe::RecipeName,
    artifact: &Path,
    work: &Path,
) -> Result<(), Error> {
    let needle = work.as_os_str().as_encoded_bytes();
    let mut stack = vec![artifact.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in crate::fs::sorted_entries(&dir)? {
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| FsError::new("stat", &path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = err::read(&path).map_err(|e| FsError::new("read", &path, e))?;
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    let file = path
                        .strip_prefix(artifact)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    return Err(Error::BuildPathLeak {
                        name: name.clone(),
                        file,
                    });
                }
            }
        }
    }
    Ok(())
}

fn is_empty(dir: &Path) -> Result<bool, FsError> {
    Ok(err::read_dir(dir)
        .map_err(|e| FsError::new("read directory", dir, e))?
        .next()
        .is_none())
}
