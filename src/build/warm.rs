//! Builder containers started ahead of the builds that take them. Starting a container
//! costs about 0.3 s on a Docker engine (more on fuse-overlayfs), and nothing of it
//! depends on the build: so when the scheduler knows a build is coming, the pool starts a
//! container of its image and options in the background, and the build finds it running.
//!
//! A container whose build succeeded goes back to the pool, used, for the next build of
//! its kind in this run: a container's whole life (create, start, its network namespace
//! and hooks, remove) cost about 0.33 s of CPU, a fifth of a cold build of small
//! extensions on two cores. The build script that takes a used container first wipes
//! what the build before could leave (docker.rs). A failed build's container is removed
//! (the kernel's count of OOM kills, for one, stays with the container); so are used
//! containers when the pool drops: they are not spares.
//!
//! Containers no build took outlive the run as spares for the next run of the same store
//! (an edit-and-build loop then starts no container while it waits), for a while only:
//! a container's first process exits [`UNUSED_LIFETIME`] (`AZB_KEEP_WARM`) after it
//! started unless a build marked it taken ([`TAKEN_MARKER`]), and the engine then removes
//! it (`--rm`). Spares are recorded in the store (`containers/`); a run claims one by
//! renaming its record into `containers/taken/`, so two runs never take the same.
//! `AZB_KEEP_WARM=0` leaves none: the pool removes what is idle when it is dropped.
//!
//! Owns when containers are created, started and removed, and their first process. What
//! runs inside is docker.rs's; the options a container is created with are its caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::Error;
use super::builder::Docker;
use crate::fs::err;

/// The label naming the process that started a container: `<host>:<pid>`.
pub(super) const OWNER_LABEL: &str = "org.azb.owner";

/// This process, as [`OWNER_LABEL`] names it.
pub(super) fn owner() -> String {
    format!("{}:{}", host(), std::process::id())
}

/// This host's name, read once.
fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        err::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    })
}

/// Whether the process `owner` names (`<host>:<pid>`) runs on this host. An owner on
/// another host counts as running: only its own host can tell.
fn running(owner: &str) -> bool {
    match owner.rsplit_once(':') {
        Some((owner_host, pid)) if owner_host == host() => pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists()),
        _ => true,
    }
}

/// How many containers of one kind may be idle or starting at once: one per build that
/// may start at the same moment (the scheduler starts builds in pairs on two slots).
const AHEAD: usize = 2;

/// How long a container runs when no build takes it, unless `AZB_KEEP_WARM` says.
pub const UNUSED_LIFETIME: Duration = Duration::from_secs(600);

/// The file a build creates in its container first of all: from then on the container
/// runs until it is removed.
pub(super) const TAKEN_MARKER: &str = "/tmp/.azb-taken";

/// The first process of every builder container: waits `lifetime`, then exits unless a
/// build took the container.
fn first_process(lifetime: Duration) -> [String; 2] {
    let secs = lifetime.as_secs().max(1);
    [
        "-c".to_owned(),
        format!("sleep {secs} & wait $!; [ -e {TAKEN_MARKER} ] && exec sleep infinity"),
    ]
}

/// A running container, removed (in the background) when dropped.
pub(super) struct Container {
    /// Its name.
    pub name: String,
    /// The record of the spare it was, claimed by this process.
    claimed: Option<PathBuf>,
    /// Whether a build of this run used it before.
    used: bool,
    /// The options it was created with.
    kind: Vec<String>,
    pool: Arc<Inner>,
}

/// Started, idle containers by the options they were created with.
pub(super) struct WarmPool {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    /// How long a container no build took runs.
    lifetime: Duration,
    /// Where spares are recorded (`containers/` of the store), unless there are none.
    spares: Option<PathBuf>,
    state: Mutex<State>,
    /// Signalled when a container started ahead is ready (or failed to start).
    started: Condvar,
}

#[derive(Default)]
struct State {
    /// Idle containers, and how many are being started, per creation options.
    kinds: BTreeMap<Vec<String>, Kind>,
    /// Background work (starting and removing containers), joined on drop.
    threads: Vec<JoinHandle<()>>,
    /// Whether the containers a killed azb left behind were looked for.
    reaped: bool,
}

#[derive(Default)]
struct Kind {
    idle: Vec<Idle>,
    starting: usize,
    /// Taken by builds of this run: each comes back when its build succeeds.
    in_use: usize,
}

/// A started container no build holds.
struct Idle {
    name: String,
    since: SystemTime,
    /// Its spare record when it came from an earlier run.
    claimed: Option<PathBuf>,
    /// Whether a build of this run used it (it then runs until removed).
    used: bool,
}

impl Idle {
    /// Whether a build may still take it: used, or its first command marks the container
    /// taken well before the container's first process would end it (at four fifths of
    /// its lifetime).
    fn fresh(&self, lifetime: Duration) -> bool {
        self.used || self.since.elapsed().is_ok_and(|age| age < lifetime * 4 / 5)
    }
}

impl WarmPool {
    /// A pool on `docker` whose containers run for `lifetime` when no build takes them;
    /// with `spares` (a directory of the store) it leaves those for the next run, and
    /// takes what an earlier run left.
    pub(super) fn new(docker: Docker, lifetime: Duration, spares: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                docker,
                lifetime,
                spares,
                state: Mutex::default(),
                started: Condvar::new(),
            }),
        }
    }

    /// A running container made with `docker create OPTIONS` (the options end with the
    /// image), named `<prefix>-<random>`: an idle one when one is ready (a used one
    /// first, so fresh ones are left as spares), else a spare an
    /// earlier run left, else the one being started ahead when it comes, otherwise one
    /// started now. With spares, the next one of its kind starts in the background.
    pub(super) fn take(&self, prefix: &str, options: &[String]) -> Result<Container, Error> {
        let ready = {
            let mut state = self.inner.lock();
            loop {
                if let Some(idle) = state.take_fresh(options, &self.inner) {
                    break Some(idle);
                }
                if let Some(spare) = self.inner.claim_spare(options) {
                    break Some(spare);
                }
                if state
                    .kinds
                    .get(options)
                    .is_none_or(|kind| kind.starting == 0)
                {
                    break None;
                }
                state = self
                    .inner
                    .started
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let container = match ready {
            Some(idle) => self.hold(idle.name, idle.claimed, idle.used, options),
            None => self.take_new(prefix, options)?,
        };
        if self.inner.spares.is_some() {
            // A fresh one for the next run (used ones are not spares).
            self.ahead(prefix, options, 1, false);
        }
        Ok(container)
    }

    /// A container started now, of this kind: for a build whose spare turned out gone
    /// (the engine restarted, or someone removed it).
    pub(super) fn take_new(&self, prefix: &str, options: &[String]) -> Result<Container, Error> {
        let name = container_name(prefix);
        self.inner.start(&name, options)?;
        Ok(self.hold(name, None, false, options))
    }

    /// The container `name` of `options`, now in use by a build.
    fn hold(
        &self,
        name: String,
        claimed: Option<PathBuf>,
        used: bool,
        options: &[String],
    ) -> Container {
        let mut state = self.inner.lock();
        state.kinds.entry(options.to_vec()).or_default().in_use += 1;
        Container {
            name,
            claimed,
            used,
            kind: options.to_vec(),
            pool: Arc::clone(&self.inner),
        }
    }

    /// Takes back `container`, which a build used and succeeded in, for the next build of
    /// its kind.
    pub(super) fn give_back(&self, mut container: Container) {
        if let Some(claimed) = container.claimed.take() {
            // Used, it is no longer the earlier run's spare.
            let _ = err::remove_file(claimed);
        }
        let idle = Idle {
            name: std::mem::take(&mut container.name),
            since: SystemTime::now(),
            claimed: None,
            used: true,
        };
        let mut state = self.inner.lock();
        let kind = state
            .kinds
            .entry(std::mem::take(&mut container.kind))
            .or_default();
        kind.in_use = kind.in_use.saturating_sub(1);
        kind.idle.push(idle);
        self.inner.started.notify_all();
    }

    /// Once per pool, in the background: removes the containers carrying `label` (`k=v`)
    /// that a process of this host started and that outlived it (azb killed mid-build
    /// leaves its containers running), spares excepted.
    pub(super) fn reap_once(&self, label: &str) {
        let mut state = self.inner.lock();
        if std::mem::replace(&mut state.reaped, true) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let label = label.to_owned();
        state
            .threads
            .push(std::thread::spawn(move || inner.reap(&label)));
    }

    /// Makes a container of this kind ready for a build about to come (unless enough
    /// are idle or starting): a spare an earlier run left, or one started in the
    /// background.
    pub(super) fn start_ahead(&self, prefix: &str, options: &[String]) {
        self.ahead(prefix, options, AHEAD, true);
    }

    /// Readies a container of this kind unless `wanted` are idle or starting (or, with
    /// `in_use`, in use by builds, whose containers come back when they succeed).
    fn ahead(&self, prefix: &str, options: &[String], wanted: usize, in_use: bool) {
        let mut state = self.inner.lock();
        let kind = state.kinds.entry(options.to_vec()).or_default();
        let coming = if in_use { kind.in_use } else { 0 };
        if kind.idle.len() + kind.starting + coming >= wanted {
            return;
        }
        if let Some(spare) = self.inner.claim_spare(options) {
            kind.idle.push(spare);
            return;
        }
        kind.starting += 1;
        let inner = Arc::clone(&self.inner);
        let name = container_name(prefix);
        let options = options.to_vec();
        let thread = std::thread::spawn(move || inner.start_ahead(name, options));
        state.threads.push(thread);
    }
}

/// `<prefix>-<12 random hex>`: unique among this engine's containers, whichever process
/// made them and whenever (a spare outlives its process, whose id may come again).
fn container_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let token = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{prefix}-{:012x}", token & 0xffff_ffff_ffff)
}

impl State {
    /// A used container of `options`, else the newest idle one a build may still take;
    /// older ones are removed in the background.
    fn take_fresh(&mut self, options: &[String], inner: &Arc<Inner>) -> Option<Idle> {
        let kind = self.kinds.get_mut(options)?;
        if let Some(at) = kind.idle.iter().position(|idle| idle.used) {
            return Some(kind.idle.remove(at));
        }
        let mut stale = Vec::new();
        let found = loop {
            match kind.idle.pop() {
                Some(idle) if idle.fresh(inner.lifetime) => break Some(idle),
                Some(idle) => stale.push(idle),
                None => break None,
            }
        };
        if !stale.is_empty() {
            let inner = Arc::clone(inner);
            let thread =
                std::thread::spawn(move || stale.into_iter().for_each(|i| inner.discard(i)));
            self.threads.push(thread);
        }
        found
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `docker create` and `docker start`; removes what was created when the start fails.
    fn start(&self, name: &str, options: &[String]) -> Result<(), Error> {
        let owner = format!("{OWNER_LABEL}={}", owner());
        let mut create = vec![
            "create",
            "--name",
            name,
            "--label",
            &owner,
            "--rm",
            "--entrypoint",
            "/bin/sh",
        ];
        create.extend(options.iter().map(String::as_str));
        let command = first_process(self.lifetime);
        create.extend(command.iter().map(String::as_str));
        self.docker.output(&create)?;
        if let Err(error) = self.docker.output(&["start", name]) {
            self.remove(name);
            return Err(error);
        }
        Ok(())
    }

    /// Starts a container for a later build and files it as idle. A failure is left for
    /// that build to meet (it starts its own and reports the error).
    fn start_ahead(&self, name: String, options: Vec<String>) {
        let since = SystemTime::now();
        let started = self.start(&name, &options);
        if let Err(error) = &started {
            tracing::debug!(%error, "starting a builder container ahead failed");
        }
        let mut state = self.lock();
        let kind = state.kinds.entry(options).or_default();
        kind.starting -= 1;
        if started.is_ok() {
            kind.idle.push(Idle {
                name,
                since,
                claimed: None,
                used: false,
            });
        }
        self.started.notify_all();
    }

    /// The spare record file of a container of `options`: `<digest>.<name>`, the digest
    /// of the engine and the options (so a run takes only what it would have made).
    fn spare_prefix(options: &[String]) -> String {
        let mut hasher = blake3::Hasher::new();
        for part in ["DOCKER_HOST", "DOCKER_CONTEXT"]
            .map(|key| std::env::var(key).unwrap_or_default())
            .iter()
            .chain(options)
        {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        format!("{}.", &hasher.finalize().to_hex()[..16])
    }

    /// Claims a spare of `options` an earlier run left, young enough to take: its record
    /// moves to `taken/<name>@<owner>` (the rename is the claim). Records too old to take
    /// are removed (their containers end by themselves).
    fn claim_spare(&self, options: &[String]) -> Option<Idle> {
        let dir = self.spares.as_ref()?;
        let prefix = Self::spare_prefix(options);
        let taken = dir.join("taken");
        for entry in err::read_dir(dir).ok()?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_prefix(&prefix) else {
                continue;
            };
            let record = entry.path();
            let since = err::read_to_string(&record)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
            let Some(since) = since else { continue };
            let claimed = taken.join(format!("{name}@{}", owner()));
            let idle = Idle {
                name: name.to_owned(),
                since,
                claimed: None,
                used: false,
            };
            if !idle.fresh(self.lifetime) {
                let _ = err::remove_file(&record);
                continue;
            }
            if err::create_dir_all(&taken).is_ok() && err::rename(&record, &claimed).is_ok() {
                tracing::debug!(container = name, "took a spare an earlier run left");
                return Some(Idle {
                    claimed: Some(claimed),
                    ..idle
                });
            }
        }
        None
    }

    /// Leaves `idle` for a later run: records it as a spare, or removes it when it is too
    /// old to take or cannot be recorded.
    fn leave(&self, idle: Idle, options: &[String]) {
        let spare = !idle.used && idle.fresh(self.lifetime);
        let Some(dir) = self.spares.as_ref().filter(|_| spare) else {
            return self.discard(idle);
        };
        let secs = idle
            .since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let record = dir.join(format!("{}{}", Self::spare_prefix(options), idle.name));
        let written = err::create_dir_all(dir).and_then(|()| err::write(&record, secs.to_string()));
        match written {
            Ok(()) => {
                if let Some(claimed) = &idle.claimed {
                    let _ = err::remove_file(claimed);
                }
            }
            Err(_) => self.discard(idle),
        }
    }

    /// Removes an idle container nobody will take, and its claim.
    fn discard(&self, idle: Idle) {
        self.remove(&idle.name);
        if let Some(claimed) = &idle.claimed {
            let _ = err::remove_file(claimed);
        }
    }

    /// Removes this store's containers whose owner on this host has ended, unless they
    /// are spares, recorded or claimed by a running process. Spare records are read
    /// before claims: a claim moves a record from the one to the other.
    fn reap(&self, label: &str) {
        let format = format!("{{{{.Names}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}");
        let filter = format!("label={label}");
        let listed = self
            .docker
            .output(&["ps", "--all", "--filter", &filter, "--format", &format]);
        let Ok(listed) = listed else {
            return;
        };
        let names_in = |dir: &Path| -> Vec<String> {
            err::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (spares, claims) = match &self.spares {
            Some(dir) => (names_in(dir), names_in(&dir.join("taken"))),
            None => Default::default(),
        };
        let spare: BTreeSet<&str> = spares
            .iter()
            .filter_map(|file| file.split_once('.').map(|(_, name)| name))
            .collect();
        for line in listed.lines() {
            let Some((name, owner)) = line.split_once(' ') else {
                continue;
            };
            let claim = claims.iter().find_map(|file| {
                let (claimed, by) = file.split_once('@')?;
                (claimed == name).then_some((file, by))
            });
            let kept = spare.contains(name) || claim.is_some_and(|(_, by)| running(by));
            if running(owner) || kept {
                continue;
            }
            tracing::debug!(
                container = name,
                "removing a build container left by {owner}"
            );
            self.remove(name);
            if let (Some((file, _)), Some(dir)) = (claim, &self.spares) {
                let _ = err::remove_file(dir.join("taken").join(file));
            }
        }
    }

    fn remove(&self, name: &str) {
        self.remove_all(&[name.to_owned()]);
    }

    /// `docker rm --force --volumes` (each container's /build volume goes with it).
    fn remove_all(&self, names: &[String]) {
        let _ = self
            .docker
            .command(["rm", "--force", "--volumes"])
            .args(names)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Container {
    /// Whether it may have gone since it was started: an earlier run left it, or a
    /// build before used it.
    pub(super) fn may_have_gone(&self) -> bool {
        self.claimed.is_some() || self.used
    }

    /// Whether a build before used it (its script wipes what that build left).
    pub(super) fn used(&self) -> bool {
        self.used
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.name.is_empty() {
            // Given back to the pool.
            return;
        }
        if let Some(kind) = self.pool.lock().kinds.get_mut(&self.kind) {
            kind.in_use = kind.in_use.saturating_sub(1);
        }
        let pool = Arc::clone(&self.pool);
        let name = std::mem::take(&mut self.name);
        let claimed = self.claimed.take();
        let thread = std::thread::spawn(move || {
            pool.remove(&name);
            if let Some(claimed) = claimed {
                let _ = err::remove_file(claimed);
            }
        });
        self.pool.lock().threads.push(thread);
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        // Wait for what is starting, then leave what is idle for the next run (or remove
        // it, with one command when there are no spares).
        loop {
            let threads = std::mem::take(&mut self.inner.lock().threads);
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
        let kinds = std::mem::take(&mut self.inner.lock().kinds);
        if self.inner.spares.is_none() {
            let idle: Vec<String> = kinds
                .into_values()
                .flat_map(|kind| kind.idle)
                .map(|idle| idle.name)
                .collect();
            if !idle.is_empty() {
                self.inner.remove_all(&idle);
            }
            return;
        }
        for (options, kind) in kinds {
            for idle in kind.idle {
                self.inner.leave(idle, &options);
            }
        }
    }
}
