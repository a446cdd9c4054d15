//! File-system helpers every module shares: atomic writes (temp file, then rename), moving a
//! finished directory into place, and exclusive lock files.
//!
//! Owns how bytes reach the disk safely. Knows nothing of what the files mean. All file I/O
//! in azb goes through `fs_err` (re-exported here) so every error names its path.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use fs_err as err;

/// An I/O error together with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{action} `{path}`")]
pub struct FsError {
    /// What was being done.
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps an I/O error with what was being done to which path. An error from an
    /// fs_err call already names the path ("failed to open file `p`"); its cause is kept
    /// instead (same kind), so a message says the path once.
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        let named = source.to_string().contains(&path.display().to_string());
        let cause = source.get_ref().and_then(|e| e.source());
        let source = match cause.and_then(|c| c.downcast_ref::<io::Error>()) {
            Some(original) if named => match original.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(original.kind(), original.to_string()),
            },
            _ => source,
        };
        Self {
            action,
            path,
            source,
        }
    }
}

/// Writes `bytes` to `path` atomically: a temp file in `tmp_dir` (same file system),
/// flushed, then renamed over `path`. Readers see the old content or the new, never a part.
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let mut tmp =
        temp_file_in(tmp_dir).map_err(|e| FsError::new("create a temp file in", tmp_dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| FsError::new("write temp file for", path, e))?;
    if let Some(parent) = path.parent() {
        err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    }
    tmp.persist(path)
        .map_err(|e| FsError::new("rename temp file onto", path, e.error))?;
    Ok(())
}

/// A temp file in `dir` that, once renamed into place, others may read: mode 0644 less
/// the umask (tempfile's own default, 0600, suits secrets, not outputs and store files).
pub fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// An exclusive lock on a file, released when dropped.
#[derive(Debug)]
pub struct LockFile {
    file: std::fs::File,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock at `path`, creating the file, waiting while another process holds it:
    /// after a second it says what it waits for (`what`: "the build of pgvector for
    /// linux/amd64", ...), and gives up after [`crate::env::LOCK_TIMEOUT`] when that is set.
    pub fn acquire(path: &Path, what: &str) -> Result<Self, FsError> {
        let timeout = crate::env::seconds(crate::env::LOCK_TIMEOUT).map_err(|message| {
            FsError::new(
                "lock",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
            )
        })?;
        Self::acquire_within(path, what, timeout)
    }

    /// [`LockFile::acquire`] with the timeout given.
    pub fn acquire_within(
        path: &Path,
        what: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<Self, FsError> {
        use std::time::{Duration, Instant};
        if let Some(parent) = path.parent() {
            err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
        }
        let file = err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| FsError::new("open lock file", path, e))?
            .into_parts()
            .0;
        let started = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let waited = started.elapsed();
                    if let Some(limit) = timeout.filter(|limit| waited >= *limit) {
                        let message = format!(
                            "gave up after {} s waiting for {what}, which another azb process \
                             holds ({} sets how long to wait)",
                            limit.as_secs(),
                            crate::env::LOCK_TIMEOUT
                        );
                        return Err(FsError::new(
                            "lock",
                            path,
                            std::io::Error::new(std::io::ErrorKind::TimedOut, message),
                        ));
                    }
                    if !told && waited >= Duration::from_secs(1) {
                        tracing::warn!(
                            "waiting for {what}: another azb process holds `{}`",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(if told { 200 } else { 50 }));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(FsError::new("lock", path, e));
                }
            }
        }
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Lists a directory's entries sorted by file name (the order never depends on the disk).
pub fn sorted_entries(dir: &Path) -> Result<Vec<err::DirEntry>, FsError> {
    let mut entries = err::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| FsError::new("read directory", dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Runs a program a test has just written, to completion. Exec'ing it can fail with
/// "text file busy" while a process another test thread is starting still holds the
/// written file open (until that process execs); that passes in a moment, so it is retried.
#[cfg(test)]
pub fn output_of_written_program(command: &mut std::process::Command) -> std::process::Output {
    for _ in 0..100 {
        match command.output() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            ran => return ran.unwrap(),
        }
    }
    panic!("{command:?} stayed busy for a second")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_held_lock_times_out_naming_what_it_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let held = super::LockFile::acquire_within(&path, "the build of a", None).unwrap();
        // Locks belong to open files: a second open in this process waits like another
        // process would.
        let timeout = Some(std::time::Duration::from_millis(300));
        let error = super::LockFile::acquire_within(&path, "the build of a", timeout)
            .err()
            .unwrap();
        let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        assert!(text.contains("the build of a"), "{text}");
        assert!(text.contains("AZB_LOCK_TIMEOUT"), "{text}");
        drop(held);
        super::LockFile::acquire_within(&path, "the build of a", timeout).unwrap();
    }

    #[test]
    fn a_message_names_the_path_once() {
        let path = std::path::Path::new("/nonexistent/azb-test/file");
        let error = super::FsError::new("read", path, super::err::read(path).unwrap_err());
        let mut text = error.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert_eq!(
            text.matches("/nonexistent/azb-test/file").count(),
            1,
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        assert_eq!(error.source.kind(), std::io::ErrorKind::NotFound);
    }

    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        err::create_dir_all(&tmp).unwrap();
        let target = dir.path().join("a/b.txt");
        write_atomic(&tmp, &target, b"one").unwrap();
        write_atomic(&tmp, &target, b"two").unwrap();
        assert_eq!(err::read(&target).unwrap(), b"two");
        assert_eq!(err::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn lock_is_exclusive_between_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = LockFile::acquire(&path, "a test").unwrap();
        let other = err::File::open(&path).unwrap();
        assert!(matches!(
            other.file().try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);
        assert!(other.file().try_lock().is_ok());
    }
}
