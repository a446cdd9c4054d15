//! Builder containers started ahead of the builds that take them. Starting a container
//! costs about 0.3 s on a Docker engine (more on fuse-overlayfs), every build needs a fresh
//! one, and nothing of it depends on the build: so when the scheduler knows a build is
//! coming, the pool starts a container of its image and options in the background, and
//! the build finds it running. Each container serves exactly one build and is
//! removed after it (in the background too); the pool removes what is left idle when it
//! is dropped.
//!
//! Owns when containers are created, started and removed. What runs inside is docker.rs's;
//! the options a container is created with are its caller's.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::Error;
use super::builder::Docker;

/// The label naming the process that started a container: `<host>:<pid>`.
pub(super) const OWNER_LABEL: &str = "org.azb.owner";

/// This process, as [`OWNER_LABEL`] names it.
pub(super) fn owner() -> String {
    format!("{}:{}", host(), std::process::id())
}

fn host() -> String {
    crate::fs::err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// How many containers of one kind may be idle or starting at once: one per build that
/// may start at the same moment (the scheduler starts builds in pairs on two slots).
const AHEAD: usize = 2;

/// A running container, removed (in the background) when dropped.
pub(super) struct Container {
    /// Its name.
    pub name: String,
    pool: Arc<Inner>,
}

/// Started, idle containers by the options they were created with.
pub(super) struct WarmPool {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
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
    /// Serial number of the next container name.
    next: u64,
    /// Whether the containers a killed azb left behind were looked for.
    reaped: bool,
}

#[derive(Default)]
struct Kind {
    idle: Vec<String>,
    starting: usize,
}

impl WarmPool {
    /// A pool on `docker`.
    pub(super) fn new(docker: Docker) -> Self {
        Self {
            inner: Arc::new(Inner {
                docker,
                state: Mutex::default(),
                started: Condvar::new(),
            }),
        }
    }

    /// A running container made with `docker create OPTIONS` (the options end with the
    /// image and its command), named `<prefix>-<n>`: an idle one when one is ready, else
    /// the one being started ahead when it comes, otherwise one started now.
    pub(super) fn take(&self, prefix: &str, options: &[String]) -> Result<Container, Error> {
        let ready = {
            let mut state = self.inner.lock();
            loop {
                let kind = state.kinds.entry(options.to_vec()).or_default();
                if let Some(name) = kind.idle.pop() {
                    break Some(name);
                }
                if kind.starting == 0 {
                    break None;
                }
                state = self
                    .inner
                    .started
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let name = match ready {
            Some(name) => name,
            None => {
                let name = self.inner.lock().name(prefix);
                self.inner.start(&name, options)?;
                name
            }
        };
        Ok(Container {
            name,
            pool: Arc::clone(&self.inner),
        })
    }

    /// Once per pool, in the background: removes the containers carrying `label` (`k=v`)
    /// that a process of this host started and that outlived it (azb killed mid-build
    /// leaves its containers running).
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

    /// Starts a container of this kind in the background (unless enough are idle or
    /// starting), for a build about to come.
    pub(super) fn start_ahead(&self, prefix: &str, options: &[String]) {
        let mut state = self.inner.lock();
        let kind = state.kinds.entry(options.to_vec()).or_default();
        if kind.idle.len() + kind.starting >= AHEAD {
            return;
        }
        kind.starting += 1;
        let inner = Arc::clone(&self.inner);
        let name = state.name(prefix);
        let options = options.to_vec();
        let thread = std::thread::spawn(move || inner.start_ahead(name, options));
        state.threads.push(thread);
    }
}

impl State {
    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}-{}", std::process::id(), self.next)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `docker create` and `docker start`; removes what was created when the start fails.
    fn start(&self, name: &str, options: &[String]) -> Result<(), Error> {
        let mut create = vec!["create", "--name", name];
        create.extend(options.iter().map(String::as_str));
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
        let started = self.start(&name, &options);
        if let Err(error) = &started {
            tracing::debug!(%error, "starting a builder container ahead failed");
        }
        let mut state = self.lock();
        let kind = state.kinds.entry(options).or_default();
        kind.starting -= 1;
        if started.is_ok() {
            kind.idle.push(name);
        }
        self.started.notify_all();
    }

    fn reap(&self, label: &str) {
        let format = format!("{{{{.Names}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}");
        let filter = format!("label={label}");
        let listed = self
            .docker
            .output(&["ps", "--all", "--filter", &filter, "--format", &format]);
        let Ok(listed) = listed else {
            return;
        };
        let host = host();
        for line in listed.lines() {
            let Some((name, owner)) = line.split_once(' ') else {
                continue;
            };
            let dead = owner
                .rsplit_once(':')
                .filter(|(h, _)| *h == host)
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
            if dead {
                tracing::debug!(
                    container = name,
                    "removing a build container left by {owner}"
                );
                self.remove(name);
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

impl Drop for Container {
    fn drop(&mut self) {
        let pool = Arc::clone(&self.pool);
        let name = std::mem::take(&mut self.name);
        let thread = std::thread::spawn(move || pool.remove(&name));
        self.pool.lock().threads.push(thread);
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        // Wait for what is starting, then remove every idle container with one command.
        loop {
            let threads = std::mem::take(&mut self.inner.lock().threads);
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
        let idle: Vec<String> = std::mem::take(&mut self.inner.lock().kinds)
            .into_values()
            .flat_map(|kind| kind.idle)
            .collect();
        if !idle.is_empty() {
            self.inner.remove_all(&idle);
        }
    }
}
