//! The build driver: one derivation, whatever the executor. Export the pinned source, open
//! the executor's sandbox, run the kind's steps there, take back what was installed,
//! normalise it into the artifact layout, refuse build paths, and hand the artifact to the
//! store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

/// Builds `planned` with its dependencies' artifacts (object files, transitive, in order)
/// laid into its toolchain, and stores the result.
pub fn build(
    ctx: &JobContext<'_>,
    planned: &Planned<'_>,
    deps: &[PathBuf],
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
    let sandbox = ctx.executor.open(&spec)?;
    let Some(steps) = steps(&recipe.build, sandbox.paths()) else {
        return Err(Error::UnsupportedKind {
            name: drv.name.clone(),
            kind: recipe.build.kind_name(),
        });
    };
    let prefix = sandbox.paths().prefix.clone();
    let installed = work.join("installed");
    sandbox.build(
        &steps,
        &mut |step| ctx.reporter.build_step(&hash, &step.label),
        &installed,
    )?;
    ctx.reporter.build_step(&hash, "normalize");
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
        builder: drv.builder.to_string(),
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
            } else if kind.is_file() && contains(&path, needle)? {
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
    Ok(())
}

/// Whether the file at `path` contains `needle`, read in chunks (artifacts can be large).
fn contains(path: &Path, needle: &[u8]) -> Result<bool, FsError> {
    use std::io::Read;
    let mut file = err::File::open(path).map_err(|e| FsError::new("open", path, e))?;
    let mut window: Vec<u8> = Vec::with_capacity((1 << 20) + needle.len());
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut chunk)
            .map_err(|e| FsError::new("read", path, e))?;
        if n == 0 {
            return Ok(false);
        }
        window.extend_from_slice(&chunk[..n]);
        if window.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
        // Keep the tail that could start a match across the chunk boundary.
        let keep = needle.len().saturating_sub(1).min(window.len());
        window.drain(..window.len() - keep);
    }
}

fn is_empty(dir: &Path) -> Result<bool, FsError> {
    Ok(err::read_dir(dir)
        .map_err(|e| FsError::new("read directory", dir, e))?
        .next()
        .is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_path_is_found_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let needle = b"/cache/tmp/build-x-AbCdEf";
        for at in [0, (1 << 20) - 10, 1 << 20, (3 << 20) - 1] {
            let mut bytes = vec![b'.'; 3 << 20];
            bytes.splice(at..at, needle.iter().copied());
            let path = dir.path().join(format!("f{at}"));
            err::write(&path, &bytes).unwrap();
            assert!(contains(&path, needle).unwrap(), "at {at}");
        }
        let path = dir.path().join("clean");
        err::write(&path, vec![b'.'; 2 << 20]).unwrap();
        assert!(!contains(&path, needle).unwrap());
    }
}
