//! One git fetch from an upstream into a mirror, and how its progress is told: git2's
//! transfer callbacks become [`Transfer`] figures handed to a [`FetchObserver`], which the
//! CLI draws (a first fetch of a large upstream takes minutes; it must not be silent).
//!
//! Also lists a remote's tags without fetching anything (as `git ls-remote --tags`).
//!
//! Owns the git2 remote calls; knows nothing of pins or which refs to ask for.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use git2::{AutotagOption, Direction, FetchOptions, Oid, Remote, RemoteCallbacks, Repository};

/// How far one fetch has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Objects received so far.
    pub received_objects: usize,
    /// Objects the server is sending (0 until it says).
    pub total_objects: usize,
    /// Bytes received so far.
    pub received_bytes: usize,
    /// Time since the fetch began.
    pub elapsed: Duration,
}

/// Told about fetches as they go; must be cheap and thread-safe.
pub trait FetchObserver: Send + Sync {
    /// Objects are arriving from `url`.
    fn progress(&self, _url: &str, _transfer: &Transfer) {}
    /// A fetch from `url` that received objects has ended.
    fn done(&self, _url: &str, _transfer: &Transfer) {}
}

/// An observer that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl FetchObserver for Unobserved {}

/// What one fetch asks for.
pub(super) struct Request<'a> {
    /// Where from (the URL after source overrides).
    pub from: &'a str,
    /// The refspecs, or commit ids.
    pub refspecs: &'a [&'a str],
    /// How many commits of history, or all of it.
    pub depth: Option<u32>,
}

/// Fetches `request` into `repo`, telling `observer` (as `url`) how it goes.
pub(super) fn fetch(
    repo: &Repository,
    url: &str,
    request: &Request<'_>,
    observer: &dyn FetchObserver,
) -> Result<(), git2::Error> {
    let mut remote = repo.remote_anonymous(request.from)?;
    let started = Instant::now();
    let mut last = Transfer::default();
    {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.transfer_progress(|stats| {
            last = Transfer {
                received_objects: stats.received_objects(),
                total_objects: stats.total_objects(),
                received_bytes: stats.received_bytes(),
                elapsed: started.elapsed(),
            };
            observer.progress(url, &last);
            true
        });
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks)
            // Tags come only as the refspecs name them.
            .download_tags(AutotagOption::None);
        if let Some(depth) = request.depth {
            options.depth(i32::try_from(depth).unwrap_or(i32::MAX));
        }
        remote.fetch(request.refspecs, Some(&mut options), None)?;
    }
    if last.received_objects > 0 {
        last.elapsed = started.elapsed();
        observer.done(url, &last);
    }
    Ok(())
}

/// The tags `from` advertises, by name, each with the commit it names: an annotated tag's
/// peeled target (`refs/tags/X^{}`, which servers advertise beside the tag object), else
/// what the ref names (a lightweight tag). Nothing is fetched or written.
pub(super) fn list_tags(from: &str) -> Result<BTreeMap<String, Oid>, git2::Error> {
    let mut remote = Remote::create_detached(from)?;
    remote.connect(Direction::Fetch)?;
    let mut tags = BTreeMap::new();
    let mut peeled = BTreeMap::new();
    for head in remote.list()? {
        let Some(name) = head.name().strip_prefix("refs/tags/") else {
            continue;
        };
        match name.strip_suffix("^{}") {
            Some(name) => peeled.insert(name.to_owned(), head.oid()),
            None => tags.insert(name.to_owned(), head.oid()),
        };
    }
    remote.disconnect()?;
    tags.extend(peeled);
    Ok(tags)
}
