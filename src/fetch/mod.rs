//! Fetching sources: bare git mirrors kept in the store (one per upstream URL), fetched with
//! git2 until the pinned commit is present, and exported as a fresh tree per build. Source
//! overrides ([`SourceMirrors`], `AZB_SOURCE_MIRRORS`) change where bytes come from, never
//! what they are: the pin is checked, and no hash sees the override.
//!
//! Owns git access. Never builds; knows nothing of recipes beyond a URL and a commit.

mod debian;
mod mirrors;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{Oid, Repository};

pub use debian::{DebianIndex, RuntimePackage, deb_contents};
pub use mirrors::{BadMirror, SourceMirrors};
pub use transfer::{FetchObserver, Transfer, Unobserved};

use transfer::Request;

use crate::fs::{FsError, LockFile, err};
use crate::recipe::CommitSha;
use crate::store::Store;

/// What can go wrong fetching a source.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The store's lock could not be taken.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// git failed on a mirror.
    #[error("git: cannot {action} `{url}` (mirror `{}`)", mirror.display())]
    Git {
        /// What was being done.
        action: &'static str,
        /// The upstream URL.
        url: String,
        /// The local mirror.
        mirror: PathBuf,
        /// Why.
        #[source]
        source: git2::Error,
    },
    /// Not one way of fetching from an upstream got through.
    #[error("git: cannot fetch `{url}`{}", through(url, from))]
    #[diagnostic(help(
        "check the URL and the network; AZB_SOURCE_MIRRORS=\"URL-PREFIX=TARGET-PREFIX\" fetches from a local copy or another server instead"
    ))]
    Unreachable {
        /// The upstream URL.
        url: String,
        /// Where it was fetched from (the URL or its override).
        from: String,
        /// The last way's error.
        #[source]
        source: git2::Error,
    },
    /// The refs of an upstream could not be listed.
    #[error("git: cannot list the tags of `{url}`{}", through(url, from))]
    #[diagnostic(help(
        "check the URL and the network; AZB_SOURCE_MIRRORS=\"URL-PREFIX=TARGET-PREFIX\" fetches from a local copy or another server instead"
    ))]
    List {
        /// The upstream URL.
        url: String,
        /// Where it was asked (the URL or its override).
        from: String,
        /// Why.
        #[source]
        source: git2::Error,
    },
    /// Neither a commit nor a tag of the repository.
    #[error(
        "`{rev}` is neither a 40-hex commit nor a tag of `{url}` (tags listed from `{fetched_from}`)"
    )]
    #[diagnostic(help("pin a commit (40 hex digits) or a tag the upstream has"))]
    RevisionMissing {
        /// The upstream URL.
        url: String,
        /// Where the refs came from.
        fetched_from: String,
        /// What was asked for.
        rev: String,
    },
    /// No apt sources file to resolve Debian packages against.
    #[error(
        "no apt sources: set AZB_APT_SOURCES to a .sources or .list file naming the Debian archive"
    )]
    NoAptSources,
    /// `dpkg --print-architecture` did not answer.
    #[error("cannot tell this machine's Debian architecture (`dpkg --print-architecture` failed)")]
    NoDpkg,
    /// apt-get could not be run or said something azb does not understand.
    #[error("apt: cannot {action}: {detail}")]
    Apt {
        /// What was being done.
        action: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// apt cannot install the wanted packages from the index.
    #[error("apt cannot resolve [{wanted}] from the Debian index:\n{detail}")]
    Resolve {
        /// What was asked for.
        wanted: String,
        /// apt's own words.
        detail: String,
    },
    /// A locked package is no longer in the index at its version.
    #[error("a package of builders.lock is no longer served by the Debian index:\n{detail}")]
    NotServed {
        /// apt's own words, or which package differs.
        detail: String,
    },
    /// After fetching every ref, the pinned commit is still not there.
    #[error("commit {commit} is not in `{url}` (fetched all refs from `{fetched_from}`)")]
    #[diagnostic(help(
        "the pin is wrong or the upstream dropped the commit (a force-push): re-pin with `azb recipe bump NAME REV`"
    ))]
    CommitMissing {
        /// The upstream URL.
        url: String,
        /// Where the refs came from (the URL or its override).
        fetched_from: String,
        /// The pin.
        commit: CommitSha,
    },
}

/// ` from `TARGET` (AZB_SOURCE_MIRRORS)` when an override sent `url` elsewhere.
fn through(url: &str, from: &str) -> String {
    if url == from {
        String::new()
    } else {
        format!(" from `{from}` (AZB_SOURCE_MIRRORS)")
    }
}

/// Where a recipe's tag label stands upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagState {
    /// It names the pinned commit.
    Pins,
    /// It names another commit now (a moved tag is reported, never followed).
    Moved(CommitSha),
    /// No such tag upstream.
    Gone,
}

/// Fetches sources into the store's mirrors and exports pinned trees.
#[derive(Clone)]
pub struct Fetcher {
    store: Store,
    mirrors: SourceMirrors,
    observer: Arc<dyn FetchObserver>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("store", &self.store)
            .field("mirrors", &self.mirrors)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher keeping mirrors in `store`, applying `mirrors` to URLs; it shows nothing.
    pub fn new(store: Store, mirrors: SourceMirrors) -> Self {
        Self {
            store,
            mirrors,
            observer: Arc::new(Unobserved),
        }
    }

    /// The same fetcher, telling `observer` how its fetches go.
    pub fn observed(self, observer: Arc<dyn FetchObserver>) -> Self {
        Self { observer, ..self }
    }

    /// Opens (creating if needed) the mirror of `url`, under its lock.
    fn open_mirror(&self, url: &str) -> Result<(Repository, PathBuf, LockFile), Error> {
        let mirror = self.store.layout().source_mirror(url);
        let lock_name = format!(
            "source-{}",
            mirror.file_name().unwrap_or_default().to_string_lossy()
        );
        let lock = LockFile::acquire(
            &self.store.layout().lock(&lock_name),
            &format!("the source mirror of {url}"),
        )?;
        let git = |action, source| Error::Git {
            action,
            url: url.to_owned(),
            mirror: mirror.clone(),
            source,
        };
        if !mirror.join("HEAD").is_file() {
            let tmp = tempfile::Builder::new()
                .prefix("mirror-")
                .tempdir_in(self.store.layout().tmp())
                .map_err(|e| FsError::new("create a temp dir in", self.store.layout().tmp(), e))?;
            // No template (sample hooks, info/exclude): a mirror runs no hooks.
            let mut options = git2::RepositoryInitOptions::new();
            options.bare(true).external_template(false);
            Repository::init_opts(tmp.path(), &options)
                .map_err(|e| git("create a mirror for", e))?;
            let tmp = tmp.keep();
            err::rename(&tmp, &mirror).map_err(|e| FsError::new("move mirror into", &mirror, e))?;
        }
        let repo = Repository::open_bare(&mirror).map_err(|e| git("open the mirror of", e))?;
        Ok((repo, mirror, lock))
    }

    /// Makes sure the mirror of `url` holds `commit`, fetching as little as the server
    /// allows, in this order:
    /// 1. the commit by id with no history (`--depth 1`): a server that serves commits by id
    ///    over a shallow-capable transport (the large forges, `git daemon` with
    ///    `uploadpack.allowAnySHA1InWant`) sends one tree instead of years of history;
    /// 2. branches and tags, whole (a server that refuses 1, or a local path, which libgit2
    ///    cannot fetch shallow);
    /// 3. the commit by id, whole;
    /// 4. every ref.
    ///
    /// A mirror may so hold only the pinned commits, without history: builds need only
    /// their trees.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn ensure(&self, url: &str, commit: CommitSha) -> Result<PathBuf, Error> {
        let (repo, mirror, _lock) = self.open_mirror(url)?;
        let oid = Oid::from_bytes(commit.as_bytes()).expect("a CommitSha is 20 bytes");
        if repo.find_commit(oid).is_ok() {
            return Ok(mirror);
        }
        let from = self.mirrors.resolve(url);
        let id = commit.to_string();
        let branches_and_tags: &[&str] =
            &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
        let attempts: [(&str, &[&str], Option<u32>); 4] = [
            ("the commit by id, shallow", &[id.as_str()], Some(1)),
            ("branches and tags", branches_and_tags, None),
            ("the commit by id", &[id.as_str()], None),
            ("every ref", &["+refs/*:refs/*"], None),
        ];
        let (mut last_error, mut reached) = (None, false);
        for (what, refspecs, depth) in attempts {
            tracing::info!(url, from = %from, what, "fetching");
            let request = Request {
                from: &from,
                refspecs,
                depth,
            };
            match transfer::fetch(&repo, url, &request, self.observer.as_ref()) {
                Ok(()) if repo.find_commit(oid).is_ok() => {
                    tracing::debug!(url, what, "found the pinned commit");
                    return Ok(mirror);
                }
                Ok(()) => reached = true,
                // A server may refuse a commit by id or a shallow fetch: try the next way.
                Err(e) => {
                    tracing::debug!(url, what, error = %e, "fetch refused or failed");
                    last_error = Some(e);
                }
            }
        }
        // Not one fetch got through: the upstream is unreachable, which is not the pin's
        // fault.
        if let (false, Some(e)) = (reached, last_error) {
            return Err(Error::Unreachable {
                url: url.to_owned(),
                from,
                source: e,
            });
        }
        Err(Error::CommitMissing {
            url: url.to_owned(),
            fetched_from: from,
            commit,
        })
    }

    /// The tags `url` (through its override) has now, by name, with the commit each
    /// names; asked of the server, nothing fetched (as `git ls-remote --tags`).
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn tags(&self, url: &str) -> Result<Vec<(String, CommitSha)>, Error> {
        let from = self.mirrors.resolve(url);
        let tags = transfer::list_tags(&from).map_err(|source| Error::List {
            url: url.to_owned(),
            from: from.clone(),
            source,
        })?;
        Ok(tags
            .into_iter()
            .filter_map(|(name, oid)| {
                // SHA-1 ids only (a SHA-256 repository's ids are not commits azb pins).
                let commit = CommitSha::from_bytes(oid.as_bytes().try_into().ok()?);
                Some((name, commit))
            })
            .collect())
    }

    /// Whether tag `tag` of `url` still names `commit`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn tag_state(&self, url: &str, tag: &str, commit: CommitSha) -> Result<TagState, Error> {
        Ok(
            match self.tags(url)?.into_iter().find(|(name, _)| name == tag) {
                Some((_, target)) if target == commit => TagState::Pins,
                Some((_, target)) => TagState::Moved(target),
                None => TagState::Gone,
            },
        )
    }

    /// Resolves `rev`, a 40-hex commit or a tag name of `url`, to a commit, with the tag
    /// that names it (for a commit: the first tag, by name, pointing at it, if any); the
    /// commit is fetched into the mirror.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn resolve(&self, url: &str, rev: &str) -> Result<(CommitSha, Option<String>), Error> {
        let tags = self.tags(url)?;
        if let Ok(commit) = rev.parse::<CommitSha>() {
            self.ensure(url, commit)?;
            let tag = tags
                .into_iter()
                .find(|(_, c)| *c == commit)
                .map(|(name, _)| name);
            return Ok((commit, tag));
        }
        let (name, commit) = tags
            .into_iter()
            .find(|(name, _)| name == rev)
            .ok_or_else(|| Error::RevisionMissing {
                url: url.to_owned(),
                fetched_from: self.mirrors.resolve(url),
                rev: rev.to_owned(),
            })?;
        self.ensure(url, commit)?;
        Ok((commit, Some(name)))
    }

    /// Writes the tree of `commit` (already in the mirror of `url`) into the empty
    /// directory `dest`; returns the commit's time (seconds since the epoch).
    #[tracing::instrument(level = "debug", skip(self, dest))]
    pub fn export(&self, url: &str, commit: CommitSha, dest: &Path) -> Result<i64, Error> {
        let mirror = self.store.layout().source_mirror(url);
        let git = |action, source| Error::Git {
            action,
            url: url.to_owned(),
            mirror: mirror.clone(),
            source,
        };
        let repo = Repository::open_bare(&mirror).map_err(|e| git("open the mirror of", e))?;
        let oid = Oid::from_bytes(commit.as_bytes()).expect("a CommitSha is 20 bytes");
        let found = repo
            .find_commit(oid)
            .map_err(|e| git("find the pinned commit in", e))?;
        // No index: the mirror is bare, and builds of several platforms export the same
        // source at once (writing the mirror's index, they would race on its lock).
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout
            .target_dir(dest)
            .force()
            .recreate_missing(true)
            .update_index(false);
        repo.checkout_tree(found.as_object(), Some(&mut checkout))
            .map_err(|e| git("export the tree of", e))?;
        Ok(found.time().seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Signature;

    /// A repository with a commit on main, one only reachable from a tag, and one only
    /// from a non-branch ref.
    fn upstream(dir: &Path) -> [CommitSha; 3] {
        let repo = Repository::init(dir).unwrap();
        let sig =
            Signature::new("t", "t@example.invalid", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let commit = |content: &str, parent: Option<Oid>| {
            let blob = repo.blob(content.as_bytes()).unwrap();
            let mut tb = repo.treebuilder(None).unwrap();
            tb.insert("file.txt", blob, 0o100644).unwrap();
            let tree = repo.find_tree(tb.write().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            repo.commit(None, &sig, &sig, content, &tree, &refs)
                .unwrap()
        };
        let main = commit("main", None);
        repo.reference("refs/heads/main", main, true, "").unwrap();
        repo.set_head("refs/heads/main").unwrap();
        let tagged = commit("tagged", Some(main));
        repo.tag_lightweight("v1", &repo.find_object(tagged, None).unwrap(), false)
            .unwrap();
        let hidden = commit("hidden", Some(main));
        repo.reference("refs/other/hidden", hidden, true, "")
            .unwrap();
        [main, tagged, hidden].map(|o| o.to_string().parse().unwrap())
    }

    #[test]
    fn fetches_commits_on_tags_and_other_refs_through_an_override() {
        let up = tempfile::tempdir().unwrap();
        let pins = upstream(up.path());
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let url = "https://example.invalid/up.git";
        let mirrors = SourceMirrors::parse(&format!(
            "https://example.invalid/up.git={}",
            up.path().display()
        ))
        .unwrap();
        let fetcher = Fetcher::new(store, mirrors);
        for (pin, content) in pins.iter().zip(["main", "tagged", "hidden"]) {
            fetcher.ensure(url, *pin).unwrap();
            let out = tempfile::tempdir().unwrap();
            let time = fetcher.export(url, *pin, out.path()).unwrap();
            assert_eq!(time, 1_700_000_000);
            assert_eq!(
                err::read_to_string(out.path().join("file.txt")).unwrap(),
                content
            );
        }
    }

    /// Records what a fetcher tells its observer.
    #[derive(Default)]
    struct Recorded {
        progress: std::sync::Mutex<Vec<Transfer>>,
        done: std::sync::Mutex<Vec<(String, Transfer)>>,
    }

    impl FetchObserver for Recorded {
        fn progress(&self, _url: &str, transfer: &Transfer) {
            self.progress.lock().unwrap().push(*transfer);
        }
        fn done(&self, url: &str, transfer: &Transfer) {
            self.done.lock().unwrap().push((url.to_owned(), *transfer));
        }
    }

    #[test]
    fn a_fetch_tells_its_progress_and_end_once_and_a_present_pin_tells_nothing() {
        let up = tempfile::tempdir().unwrap();
        let [main, ..] = upstream(up.path());
        let store_dir = tempfile::tempdir().unwrap();
        let url = "https://example.invalid/up.git";
        let mirrors = SourceMirrors::parse(&format!("{url}={}", up.path().display())).unwrap();
        let recorded = Arc::new(Recorded::default());
        let fetcher = Fetcher::new(Store::open(store_dir.path()).unwrap(), mirrors)
            .observed(recorded.clone());
        fetcher.ensure(url, main).unwrap();
        let done = recorded.done.lock().unwrap().clone();
        assert_eq!(done.len(), 1, "{done:?}");
        let (told_url, end) = &done[0];
        // Observers hear the recipe's URL, not the override's path.
        assert_eq!(told_url, url);
        // main and its tag's and hidden ref's history: at least main's commit, tree, blob.
        assert!(end.received_objects >= 3, "{end:?}");
        assert_eq!(end.received_objects, end.total_objects, "{end:?}");
        assert!(end.received_bytes > 0, "{end:?}");
        let progress = recorded.progress.lock().unwrap().clone();
        assert!(!progress.is_empty());
        assert!(
            progress
                .windows(2)
                .all(|w| w[0].received_objects <= w[1].received_objects),
            "{progress:?}"
        );
        // The pin is in the mirror now: nothing is fetched, nothing told.
        let told = recorded.progress.lock().unwrap().len();
        fetcher.ensure(url, main).unwrap();
        assert_eq!(recorded.progress.lock().unwrap().len(), told);
        assert_eq!(recorded.done.lock().unwrap().len(), 1);
    }

    #[test]
    fn tags_are_listed_without_a_fetch_and_an_annotated_one_names_its_commit() {
        let up = tempfile::tempdir().unwrap();
        let [main, tagged, _] = upstream(up.path());
        let repo = Repository::open(up.path()).unwrap();
        let signature = Signature::new("t", "t@example.invalid", &git2::Time::new(0, 0)).unwrap();
        let annotated = repo
            .tag(
                "v2",
                &repo.find_object(main_oid(main), None).unwrap(),
                &signature,
                "release 2",
                false,
            )
            .unwrap();
        assert_ne!(annotated, main_oid(main), "a tag object of its own");
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let url = "https://example.invalid/up.git";
        let mirrors = SourceMirrors::parse(&format!("{url}={}", up.path().display())).unwrap();
        let fetcher = Fetcher::new(store.clone(), mirrors);
        assert_eq!(
            fetcher.tags(url).unwrap(),
            vec![("v1".to_owned(), tagged), ("v2".to_owned(), main)]
        );
        assert!(
            !store.layout().source_mirror(url).exists(),
            "listing fetches nothing"
        );
        // Resolving a tag fetches its commit.
        assert_eq!(
            fetcher.resolve(url, "v2").unwrap(),
            (main, Some("v2".to_owned()))
        );
        let out = tempfile::tempdir().unwrap();
        fetcher.export(url, main, out.path()).unwrap();
    }

    fn main_oid(commit: CommitSha) -> Oid {
        Oid::from_bytes(commit.as_bytes()).unwrap()
    }

    #[test]
    fn one_source_exports_to_many_builds_at_once() {
        // Both platforms of a recipe export the same commit at the same moment.
        let up = tempfile::tempdir().unwrap();
        let [main, ..] = upstream(up.path());
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let url = "https://example.invalid/up.git";
        let mirrors = SourceMirrors::parse(&format!("{url}={}", up.path().display())).unwrap();
        let fetcher = Fetcher::new(store, mirrors);
        fetcher.ensure(url, main).unwrap();
        let outs: Vec<_> = (0..16).map(|_| tempfile::tempdir().unwrap()).collect();
        std::thread::scope(|scope| {
            let exports: Vec<_> = outs
                .iter()
                .map(|out| scope.spawn(|| fetcher.export(url, main, out.path())))
                .collect();
            for export in exports {
                assert_eq!(export.join().unwrap().unwrap(), 1_700_000_000);
            }
        });
        for out in &outs {
            assert_eq!(
                err::read_to_string(out.path().join("file.txt")).unwrap(),
                "main"
            );
        }
    }

    #[test]
    fn a_pin_fetches_branches_and_tags_or_the_commit_never_pull_request_refs() {
        let up = tempfile::tempdir().unwrap();
        let [main, tagged, hidden] = upstream(up.path());
        let repo = Repository::open(up.path()).unwrap();
        let head = repo.head().unwrap().target().unwrap();
        repo.reference("refs/pull/1/head", head, true, "").unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(
            Store::open(store_dir.path()).unwrap(),
            SourceMirrors::default(),
        );
        let url = up.path().display().to_string();
        let mirror = fetcher.ensure(&url, main).unwrap();
        let fetched = Repository::open_bare(&mirror).unwrap();
        let refs = ref_names(&fetched);
        assert!(
            refs.iter().all(|r| !r.starts_with("refs/pull/")),
            "{refs:?}"
        );
        assert!(
            !fetched.is_shallow(),
            "a local upstream gives whole history"
        );
        for pin in [tagged, hidden] {
            fetcher.ensure(&url, pin).unwrap();
        }
    }

    /// The names of every ref of `repo`.
    fn ref_names(repo: &Repository) -> Vec<String> {
        repo.references()
            .unwrap()
            .map(|r| r.unwrap().name().unwrap().to_owned())
            .collect()
    }

    /// `git daemon` serving `base` on a free loopback port, killed when dropped.
    struct Daemon(std::process::Child, u16);

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn git_daemon(base: &Path) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself: `git daemon` runs it as a child that killing `git` leaves
        // behind (holding the test's output open).
        let exec_path = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let child = std::process::Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed().as_secs() < 30, "git daemon did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Daemon(child, port)
    }

    /// A fetcher with an empty store, and `git daemon` serving `upstream()` as `up`, with
    /// commits served by id or not.
    fn daemon_upstream(
        by_id: bool,
    ) -> (
        Fetcher,
        String,
        [CommitSha; 3],
        Daemon,
        [tempfile::TempDir; 2],
    ) {
        let base = tempfile::tempdir().unwrap();
        let up = base.path().join("up");
        let pins = upstream(&up);
        let repo = Repository::open(&up).unwrap();
        repo.config()
            .unwrap()
            .set_bool("uploadpack.allowAnySHA1InWant", by_id)
            .unwrap();
        let daemon = git_daemon(base.path());
        let store_dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(
            Store::open(store_dir.path()).unwrap(),
            SourceMirrors::default(),
        );
        let url = format!("git://127.0.0.1:{}/up", daemon.1);
        (fetcher, url, pins, daemon, [base, store_dir])
    }

    /// `ensure`, failing (instead of hanging the suite) after a minute.
    fn ensure_within_a_minute(fetcher: &Fetcher, url: &str, pin: CommitSha) -> Repository {
        let (done, wait) = std::sync::mpsc::channel();
        let (fetcher, url) = (fetcher.clone(), url.to_owned());
        std::thread::spawn(move || {
            let _ = done.send(fetcher.ensure(&url, pin));
        });
        let mirror = wait
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("fetching from git daemon finished")
            .unwrap();
        Repository::open_bare(mirror).unwrap()
    }

    fn has(repo: &Repository, commit: CommitSha) -> bool {
        repo.find_commit(Oid::from_bytes(commit.as_bytes()).unwrap())
            .is_ok()
    }

    #[test]
    fn a_server_that_serves_commits_by_id_gives_the_pin_alone_shallow() {
        let (fetcher, url, [main, tagged, hidden], _daemon, _dirs) = daemon_upstream(true);
        let mirror = ensure_within_a_minute(&fetcher, &url, hidden);
        assert!(has(&mirror, hidden));
        assert!(mirror.is_shallow(), "one commit, no history");
        assert!(!has(&mirror, main), "its parent was not fetched");
        let refs = ref_names(&mirror);
        assert!(
            !refs.iter().any(|r| r.starts_with("refs/other/")),
            "fetched by id, not through every ref: {refs:?}"
        );
        let out = tempfile::tempdir().unwrap();
        fetcher.export(&url, hidden, out.path()).unwrap();
        assert_eq!(
            err::read_to_string(out.path().join("file.txt")).unwrap(),
            "hidden"
        );
        // Tags are listed from the server; another pin comes shallow beside the first.
        let tags = fetcher.tags(&url).unwrap();
        assert_eq!(tags, vec![("v1".to_owned(), tagged)]);
        assert!(!has(&mirror, tagged), "listing fetched nothing");
        let mirror = ensure_within_a_minute(&fetcher, &url, main);
        assert!(has(&mirror, main) && has(&mirror, hidden));
    }

    #[test]
    fn a_server_that_refuses_commits_by_id_gives_whole_history_through_branches_and_tags() {
        let (fetcher, url, [main, tagged, hidden], _daemon, _dirs) = daemon_upstream(false);
        let mirror = ensure_within_a_minute(&fetcher, &url, tagged);
        assert!(
            has(&mirror, tagged) && has(&mirror, main),
            "with its history"
        );
        assert!(!mirror.is_shallow());
        // Reachable from no branch or tag and not served by id: every ref is fetched.
        let mirror = ensure_within_a_minute(&fetcher, &url, hidden);
        assert!(has(&mirror, hidden));
        assert!(ref_names(&mirror).contains(&"refs/other/hidden".to_owned()));
    }

    #[test]
    fn an_unreachable_upstream_is_a_fetch_error_not_a_missing_commit() {
        let store_dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(
            Store::open(store_dir.path()).unwrap(),
            SourceMirrors::default(),
        );
        let pin: CommitSha = "1111111111111111111111111111111111111111".parse().unwrap();
        let e = fetcher.ensure("/nonexistent/upstream", pin).unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        assert_eq!(e.to_string(), "git: cannot fetch `/nonexistent/upstream`");
        // Through an override, the message says where it went.
        let url = "https://example.invalid/up";
        let fetcher = Fetcher::new(
            Store::open(store_dir.path()).unwrap(),
            SourceMirrors::parse(&format!("{url}=/nonexistent/mirror")).unwrap(),
        );
        let e = fetcher.ensure(url, pin).unwrap_err();
        assert_eq!(
            e.to_string(),
            "git: cannot fetch `https://example.invalid/up` from `/nonexistent/mirror` (AZB_SOURCE_MIRRORS)"
        );
        let e = fetcher.tags(url).unwrap_err();
        assert!(matches!(e, Error::List { .. }), "{e:?}");
        assert!(e.to_string().contains("from `/nonexistent/mirror`"), "{e}");
    }

    #[test]
    fn a_commit_missing_upstream_is_a_clear_error() {
        let up = tempfile::tempdir().unwrap();
        upstream(up.path());
        let store_dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(
            Store::open(store_dir.path()).unwrap(),
            SourceMirrors::default(),
        );
        let missing: CommitSha = "1111111111111111111111111111111111111111".parse().unwrap();
        let url = up.path().display().to_string();
        let e = fetcher.ensure(&url, missing).unwrap_err();
        assert!(matches!(e, Error::CommitMissing { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("commit 1111111111111111111111111111111111111111 is not in"),
            "{e}"
        );
    }
}
