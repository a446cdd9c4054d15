//! The build driver: one derivation, whatever the executor. Export the pinned source, open
//! the executor's sandbox, run the kind's steps there, take back what was installed,
//! normalise it into the artifact layout, refuse build paths, and hand the artifact to the
//! store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::executor::{Executor, SessionSpec};
use super::kind::steps;
use super::tree::normalize;
use super::{Error, Reporter};
use crate::drv::Planned;
use crate::fetch::Fetcher;
use crate::fs::{FsError, err};
use crate::store::{BuildRecord, Realisation, Store};

/// Everything a build needs besides the derivation.
pub struct JobContext<'a> {
    /// The store (for tmp/, logs and the result).
    pub store: &'a Store,
    /// Source access (the source is already in its mirror).
    pub fetcher: &'a Fetcher,
    /// Where the derivation's platform builds.
    pub executor: &'a dyn Executor,
    /// Parallel make jobs per build.
    pub make_jobs: usize,
    /// Where events go.
    pub reporter: &'a dyn Reporter,
}

/// Builds `planned` with its dependencies' artifact tars (transitive, in order) laid into
/// its toolchain, and stores the result.
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
    let src = work.join("src");
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
    let build_dir = match &drv.subdir {
        Some(sub) => src.join(sub),
        None => src.clone(),
    };
    // A symlink in the tree must not lead the build out of it either.
    let inside = build_dir
        .canonicalize()
        .ok()
        .zip(src.canonicalize().ok())
        .is_some_and(|(dir, root)| dir.starts_with(root));
    if !build_dir.is_dir() || !inside {
        return Err(Error::NoSubdir {
            name: drv.name.clone(),
            subdir: drv.subdir.clone().unwrap_or_default(),
        });
    }
    ctx.reporter.build_step(&hash, "prepare sandbox");
    let env: BTreeMap<String, String> = [
        ("LANG", "C".to_owned()),
        ("LC_ALL", "C".to_owned()),
        ("TZ", "UTC".to_owned()),
        ("SOURCE_DATE_EPOCH", source_time.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let scratch = work.join("executor");
    err::create_dir_all(&scratch).map_err(|e| FsError::new("create directory", &scratch, e))?;
    let spec = SessionSpec {
        drv,
        build: &recipe.build,
        source: &src,
        deps,
        env,
        log: &log,
        work: &scratch,
        make_jobs: ctx.make_jobs,
    };
    let mut sandbox = ctx.executor.open(&spec)?;
    let Some(steps) = steps(&recipe.build, sandbox.paths()) else {
        return Err(Error::UnsupportedKind {
            name: drv.name.clone(),
            kind: recipe.build.kind_name(),
        });
    };
    let prefix = sandbox.paths().prefix.clone();
    for step in steps {
        ctx.reporter.build_step(&hash, &step.label);
        sandbox.run(&step)?;
    }
    ctx.reporter.build_step(&hash, "normalize");
    let installed = work.join("installed");
    sandbox.finish(&installed)?;
    let artifact = work.join("artifact");
    let mut roots = vec![src.clone()];
    if build_dir != src {
        roots.push(build_dir.clone());
    }
    normalize(
        &drv.name,
        drv.platform,
        &installed,
        &prefix,
        &roots,
        &artifact,
    )?;
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
        builder: drv.builder.clone(),
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
