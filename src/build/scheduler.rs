//! The scheduler: asks the store first, fetches every missing source (and the tools and
//! crates of cargo-pgrx builds) before any build starts, then runs independent derivations
//! in parallel (a rayon pool of `jobs` threads), dependencies first, one lock per
//! derivation. With `keep_going`, independent work continues after a failure; dependents
//! of a failure are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;

use super::executor::Executor;
use super::job::{JobContext, build};
use super::pgrx::prepare;
use super::{Error, Reporter};
use crate::drv::{DrvHash, Plan, Planned};
use crate::fetch::Fetcher;
use crate::recipe::{Build, Platform};
use crate::remote::Remote;
use crate::store::{Lookup, Realisation, Store};

/// How many sources are fetched at once at most.
const PARALLEL_FETCHES: usize = 8;

/// How to realise a plan.
pub struct Scheduler<'a> {
    /// The store.
    pub store: &'a Store,
    /// Source access.
    pub fetcher: &'a Fetcher,
    /// Where each platform builds.
    pub executors: BTreeMap<Platform, Box<dyn Executor>>,
    /// Builds at once.
    pub jobs: usize,
    /// Continue independent work after a failure.
    pub keep_going: bool,
    /// Where events go.
    pub reporter: &'a dyn Reporter,
    /// Remote caches asked after the store and before any fetch or build.
    pub remote: Option<&'a Remote>,
}

/// What realising a plan gave.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every derivation that is now in the store, its object and layer verified.
    pub artifacts: BTreeMap<DrvHash, Realisation>,
    /// The derivations built in this run.
    pub built: Vec<DrvHash>,
    /// The derivations substituted in this run, with where from.
    pub substituted: Vec<(DrvHash, String)>,
    /// Failures, in the order they happened (skips of dependents included).
    pub failures: Vec<(DrvHash, Error)>,
}

impl Scheduler<'_> {
    /// Makes every derivation of `plan` present in the store.
    pub fn realise(&self, plan: &Plan<'_>) -> Result<Outcome, Error> {
        let mut outcome = Outcome::default();
        let mut pending: Vec<&Planned<'_>> = Vec::new();
        let mut seen = BTreeSet::new();
        for planned in &plan.items {
            if !seen.insert(planned.hash) {
                continue;
            }
            match self.store.lookup(&planned.hash)? {
                Lookup::Hit(record) => {
                    outcome.artifacts.insert(planned.hash, *record);
                }
                Lookup::Corrupt { what, quarantine } => {
                    self.reporter.warn(&format!(
                        "the {what} of `{}` ({}) was damaged; moved to {} and rebuilding",
                        planned.drv.name,
                        planned.drv.platform,
                        quarantine.display()
                    ));
                    pending.push(planned);
                }
                Lookup::Miss => pending.push(planned),
            }
        }
        // Then the remote caches: a substituted derivation fetches no source.
        if let Some(remote) = self.remote.filter(|r| !r.is_empty()) {
            let warn = |message: &str| self.reporter.warn(message);
            pending.retain(
                |planned| match remote.substitute(self.store, &planned.drv, &warn) {
                    Some(found) => {
                        self.reporter.substituted(
                            &planned.drv.name,
                            planned.drv.platform,
                            &found.url,
                        );
                        outcome.substituted.push((planned.hash, found.url));
                        outcome.artifacts.insert(planned.hash, found.record);
                        false
                    }
                    None => true,
                },
            );
        }
        self.reporter.start(pending.len());
        if pending.is_empty() {
            return Ok(outcome);
        }
        // The first builds' environments get ready while sources are fetched.
        let mut warmed = BTreeSet::new();
        self.warm_next(&pending, &mut warmed);
        let mut failed: BTreeSet<DrvHash> = BTreeSet::new();
        // Every source is fetched before any build starts: builds have no network. The
        // sources are fetched side by side (a fetch mostly waits on the server); their
        // failures are then taken in plan order.
        let mut fetched = BTreeSet::new();
        let sources: Vec<&Planned<'_>> = pending
            .iter()
            .copied()
            .filter(|p| fetched.insert((p.recipe.recipe.url(), p.drv.commit)))
            .collect();
        let fetchers = rayon::ThreadPoolBuilder::new()
            .num_threads(sources.len().clamp(1, PARALLEL_FETCHES))
            .build()
            .expect("a thread pool of a few threads can be built");
        let results: Vec<_> = fetchers.install(|| {
            sources
                .par_iter()
                .map(|planned| {
                    let recipe = &planned.recipe.recipe;
                    self.reporter.fetching(&recipe.name, recipe.url());
                    self.fetcher.ensure(recipe.url(), planned.drv.commit)
                })
                .collect()
        });
        for (planned, result) in sources.into_iter().zip(results) {
            let recipe = &planned.recipe.recipe;
            let commit = planned.drv.commit;
            if let Err(source) = result {
                let error = Error::Fetch {
                    name: recipe.name.clone(),
                    source,
                };
                if !self.keep_going {
                    return Err(error);
                }
                for p in pending
                    .iter()
                    .filter(|p| p.recipe.recipe.url() == recipe.url() && p.drv.commit == commit)
                {
                    failed.insert(p.hash);
                }
                outcome.failures.push((planned.hash, error));
            }
        }
        // So are the tools and crates of Rust builds (cargo-pgrx, the locked crates), once
        // per source and subdir (a failed one is tried again for its other platforms, so
        // each gets its error).
        let mut prepared = BTreeSet::new();
        for planned in &pending {
            let recipe = &planned.recipe.recipe;
            let Build::CargoPgrx { pgrx, .. } = &recipe.build else {
                continue;
            };
            if failed.contains(&planned.hash) {
                continue;
            }
            let key = (recipe.url(), planned.drv.commit, &planned.drv.subdir);
            let fetch_crates = !prepared.contains(&key);
            if fetch_crates {
                self.reporter.fetching(
                    &recipe.name,
                    &format!("the crate registry (cargo-pgrx {pgrx} and the crates of Cargo.lock)"),
                );
            }
            match prepare(self.store, self.fetcher, planned, fetch_crates) {
                Ok(()) => {
                    prepared.insert(key);
                }
                Err(error) if !self.keep_going => return Err(error),
                Err(error) => {
                    failed.insert(planned.hash);
                    outcome.failures.push((planned.hash, error));
                }
            }
        }
        self.run_builds(plan, pending, failed, outcome, warmed)
    }

    /// Tells the executors of the next builds to come (as many as run at once) that
    /// they are coming, each once.
    fn warm_next(&self, pending: &[&Planned<'_>], warmed: &mut BTreeSet<DrvHash>) {
        for planned in pending.iter().take(self.jobs.max(1)) {
            if warmed.insert(planned.hash) {
                self.executors[&planned.drv.platform]
                    .warm(&planned.drv, &planned.recipe.recipe.build);
            }
        }
    }

    fn run_builds<'p>(
        &self,
        plan: &Plan<'p>,
        mut pending: Vec<&Planned<'p>>,
        mut failed: BTreeSet<DrvHash>,
        mut outcome: Outcome,
        mut warmed: BTreeSet<DrvHash>,
    ) -> Result<Outcome, Error> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs.max(1))
            .build()
            .expect("a thread pool of a few threads can be built");
        // The machine's cores are shared out as `make -j` among the builds that run: a
        // build started when others are ready too gets its share, one that starts alone
        // gets every free core, and the total never passes the core count (the last
        // builds of a plan, or a chain of dependencies, no longer run on one core).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut cores_in_use = 0usize;
        let mut cores_of: BTreeMap<DrvHash, usize> = BTreeMap::new();
        let by_hash: BTreeMap<DrvHash, &Planned<'p>> =
            plan.items.iter().map(|p| (p.hash, p)).collect();
        let (sender, receiver) = mpsc::channel::<(DrvHash, Result<Realisation, Error>)>();
        let mut running = 0usize;
        let mut stop = false;
        pool.in_place_scope(|scope| -> Result<(), Error> {
            loop {
                // Skip what depends on a failure.
                pending.retain(|planned| {
                    if failed.contains(&planned.hash) {
                        return false;
                    }
                    let bad = planned.drv.deps.values().find(|d| failed.contains(d));
                    if let Some(bad) = bad {
                        failed.insert(planned.hash);
                        outcome.failures.push((
                            planned.hash,
                            Error::DependencyFailed {
                                name: planned.drv.name.clone(),
                                platform: planned.drv.platform,
                                dependency: *bad,
                            },
                        ));
                    }
                    bad.is_none()
                });
                // Start what is ready, as many as there are job slots and free cores.
                let ready: Vec<&Planned<'p>> = pending
                    .iter()
                    .copied()
                    .filter(|p| {
                        p.drv
                            .deps
                            .values()
                            .all(|d| outcome.artifacts.contains_key(d))
                    })
                    .collect();
                let slots = if stop {
                    0
                } else {
                    self.jobs.max(1).saturating_sub(running).min(ready.len())
                };
                for (started_now, planned) in ready.into_iter().take(slots).enumerate() {
                    let free = cores.saturating_sub(cores_in_use);
                    if free == 0 && running > 0 {
                        break;
                    }
                    let make_jobs = (free / (slots - started_now)).max(1);
                    cores_in_use += make_jobs;
                    cores_of.insert(planned.hash, make_jobs);
                    let dep_objects: Vec<PathBuf> = closure(planned, &by_hash)
                        .iter()
                        .map(|d| self.store.object_path(&outcome.artifacts[d]))
                        .collect();
                    let sender = sender.clone();
                    let ctx = JobContext {
                        store: self.store,
                        fetcher: self.fetcher,
                        executor: self.executors[&planned.drv.platform].as_ref(),
                        make_jobs,
                        reporter: self.reporter,
                    };
                    scope.spawn(move |_| {
                        let started = Instant::now();
                        ctx.reporter.build_started(
                            &planned.hash,
                            &planned.drv.name,
                            planned.drv.platform,
                        );
                        let result = build_locked(&ctx, planned, &dep_objects);
                        ctx.reporter.build_finished(
                            &planned.hash,
                            result.is_ok(),
                            started.elapsed(),
                        );
                        let _ = sender.send((planned.hash, result));
                    });
                    running += 1;
                    pending.retain(|p| p.hash != planned.hash);
                }
                // While these run, the next ones' containers start.
                self.warm_next(&pending, &mut warmed);
                if running == 0 {
                    return Ok(());
                }
                let (hash, result) = receiver
                    .recv()
                    .expect("a running build always reports back");
                running -= 1;
                cores_in_use -= cores_of.remove(&hash).unwrap_or(0);
                match result {
                    Ok(done) => {
                        outcome.built.push(hash);
                        outcome.artifacts.insert(hash, done);
                    }
                    Err(error) => {
                        failed.insert(hash);
                        outcome.failures.push((hash, error));
                        stop |= !self.keep_going;
                    }
                }
            }
        })?;
        Ok(outcome)
    }
}

/// Builds under the derivation's lock; if another process finished it meanwhile, uses that.
fn build_locked(
    ctx: &JobContext<'_>,
    planned: &Planned<'_>,
    deps: &[PathBuf],
) -> Result<Realisation, Error> {
    let what = format!(
        "the build of {} for {}",
        planned.drv.name, planned.drv.platform
    );
    let _lock = ctx.store.lock(&planned.hash, &what)?;
    if let Lookup::Hit(record) = ctx.store.lookup(&planned.hash)? {
        return Ok(*record);
    }
    build(ctx, planned, deps)?;
    match ctx.store.lookup(&planned.hash)? {
        Lookup::Hit(record) => Ok(*record),
        _ => Err(crate::store::Error::Fs(crate::fs::FsError::new(
            "read back the artifact just stored for",
            ctx.store.layout().realisation(&planned.hash),
            std::io::Error::other("missing or corrupt right after writing"),
        ))
        .into()),
    }
}

/// Every dependency of `planned`, transitively, dependencies before dependents.
fn closure(planned: &Planned<'_>, by_hash: &BTreeMap<DrvHash, &Planned<'_>>) -> Vec<DrvHash> {
    fn visit(
        hash: DrvHash,
        by_hash: &BTreeMap<DrvHash, &Planned<'_>>,
        seen: &mut BTreeSet<DrvHash>,
        out: &mut Vec<DrvHash>,
    ) {
        if !seen.insert(hash) {
            return;
        }
        for dep in by_hash[&hash].drv.deps.values() {
            visit(*dep, by_hash, seen, out);
        }
        out.push(hash);
    }
    let (mut seen, mut out) = (BTreeSet::new(), Vec::new());
    for dep in planned.drv.deps.values() {
        visit(*dep, by_hash, &mut seen, &mut out);
    }
    out
}
