//! The executor seam: what the build driver (job.rs) asks of an environment that runs a
//! build kind's steps. An [`Executor`] opens a [`Sandbox`] for one derivation: the pinned
//! source and the dependencies' artifacts go in, the sandbox says where things are as the
//! steps see them ([`KindPaths`]), runs each [`Step`] with its output in the log, and hands
//! back what the build installed (stripped), as a plain directory of this machine.
//!
//! Owns the contract only. The host executor (host.rs) and the builder containers
//! (docker.rs) implement it; neither decides what a derivation is nor touches the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Error;
use super::kind::KindPaths;
use crate::drv::Derivation;
use crate::recipe::Build;

/// One command of a build, as data: guest paths only.
#[derive(Debug, Clone)]
pub struct Step {
    /// Shown to people and in errors (`make`, `make install`).
    pub label: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Directory to run in.
    pub cwd: PathBuf,
}

/// What a sandbox is opened with.
pub struct SessionSpec<'a> {
    /// The derivation (name, platform, subdir, build packages).
    pub drv: &'a Derivation,
    /// Its build kind.
    pub build: &'a Build,
    /// The exported pinned source, on this machine.
    pub source: &'a Path,
    /// The dependencies' artifacts as store object files (zstd tars,
    /// [`crate::store::read_object`]), transitive, dependencies first.
    pub deps: &'a [PathBuf],
    /// Variables every step sees (SOURCE_DATE_EPOCH, locale, ...); the executor adds its
    /// own PATH, HOME and TMPDIR.
    pub env: BTreeMap<String, String>,
    /// The log every line goes to.
    pub log: &'a Path,
    /// A private scratch directory of this machine for the executor's own use.
    pub work: &'a Path,
    /// Parallel jobs for make and friends.
    pub make_jobs: usize,
}

/// Where builds run.
pub trait Executor: Sync {
    /// Told of a build that is about to come (before its source is fetched), so the
    /// environment can get ready meanwhile. Never fails: `open` meets any problem again.
    fn warm(&self, _drv: &Derivation, _build: &Build) {}

    /// Prepares the environment of one build.
    fn open<'a>(&'a self, spec: &SessionSpec<'_>) -> Result<Box<dyn Sandbox + 'a>, Error>;
}

/// One build's environment, open.
pub trait Sandbox {
    /// The paths the steps use.
    fn paths(&self) -> &KindPaths;
    /// Runs `steps` in order, each one's output appended to the log (`started` hears of
    /// each as it begins); a failure names its step and carries the log's tail. Then strips
    /// the ELF files the build installed for its platform and puts what it installed under
    /// DESTDIR into `into`, a directory of this machine (DESTDIR's layout: `into` + the
    /// prefix holds lib/, share/, ...). Ends the sandbox.
    fn build(
        self: Box<Self>,
        steps: &[Step],
        started: &mut dyn FnMut(&Step),
        into: &Path,
    ) -> Result<(), Error>;
}

/// How a command run into a log ended.
pub(super) enum Ran {
    /// It exited 0.
    Succeeded,
    /// It exited otherwise (the status, as text).
    Failed(String),
    /// It could not be started, or its end could not be waited for.
    NotStarted(std::io::Error),
}

/// The one runner of logged commands: runs `command` with its stdout and stderr appended
/// to `log` line by line (so one read of the log sees whole lines), after a `$ header`
/// line (the command as the user should read it).
pub(super) fn run_to_log(
    mut command: std::process::Command,
    header: &str,
    log: &Path,
) -> Result<Ran, crate::fs::FsError> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    use crate::fs::{FsError, err};

    let mut out = err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| FsError::new("open log", log, e))?;
    let line = format!("$ {header}\n");
    out.write_all(line.as_bytes())
        .map_err(|e| FsError::new("write log", log, e))?;
    let (reader, writer) =
        std::io::pipe().map_err(|e| FsError::new("create a pipe for", log, e))?;
    let writer_err = writer
        .try_clone()
        .map_err(|e| FsError::new("create a pipe for", log, e))?;
    let mut child = match command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Ok(Ran::NotStarted(e)),
    };
    // The command holds the pipe's writers; drop ours so reading ends with the child.
    drop(command);
    for line in BufReader::new(reader).split(b'\n') {
        let mut line = line.map_err(|e| FsError::new("read the output logged in", log, e))?;
        line.push(b'\n');
        out.write_all(&line)
            .map_err(|e| FsError::new("write log", log, e))?;
    }
    let status = match child.wait() {
        Ok(status) => status,
        Err(e) => return Ok(Ran::NotStarted(e)),
    };
    let _ = out.flush();
    Ok(if status.success() {
        Ran::Succeeded
    } else {
        Ran::Failed(status.to_string())
    })
}

/// Runs `command` for `step` of `drv` into `log` ([`run_to_log`]); a failure carries the
/// log's tail. Every executor's steps go through it, so each is logged the same way.
pub(super) fn run_logged(
    command: std::process::Command,
    step: &Step,
    drv: &Derivation,
    log: &Path,
) -> Result<(), Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let header = format!("{}  (in {})", step.argv.join(" "), step.cwd.display());
    match run_to_log(command, &header, log)? {
        Ran::Succeeded => Ok(()),
        Ran::Failed(status) => Err(Error::Command {
            name: drv.name.clone(),
            platform: drv.platform,
            step: step.label.clone(),
            status,
            tail: log_tail(log, 25),
            log: log.to_owned(),
        }),
        Ran::NotStarted(source) => Err(Error::Spawn {
            name: drv.name.clone(),
            program,
            source,
        }),
    }
}

/// Quotes `text` for a POSIX shell.
pub(super) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The last `lines` lines of a log, indented for display.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = crate::fs::err::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
