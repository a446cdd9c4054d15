//! The host executor: runs a build kind's steps on this machine, in a private work
//! directory, with an allow-listed environment, no network (an empty network namespace),
//! a compiler wrapper that maps build paths and drops host-specific CPU flags, and every
//! line of output appended to the derivation's log.
//!
//! Only runs things: the scheduler has already asked the store, fetched the source and
//! chosen the steps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Error, HostToolchain};
use crate::fs::{FsError, err};
use crate::recipe::RecipeName;

/// One command of a build.
#[derive(Debug, Clone)]
pub struct Step {
    /// Shown to people and in errors (`make`, `make install`).
    pub label: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Directory to run in.
    pub cwd: PathBuf,
}

/// The environment one build runs in.
#[derive(Debug)]
pub struct Session {
    /// The recipe (for messages).
    pub name: RecipeName,
    /// Variables the steps see; nothing else from azb's own environment leaks in.
    pub env: BTreeMap<String, String>,
    /// The log file every line goes to.
    pub log: PathBuf,
    /// Whether steps may reach the network.
    pub network: bool,
}

/// The compiler wrapper: removes `-march=native`, `-mtune=native` and `-mcpu=native` (an
/// artifact must run on any CPU of its platform) and maps the work paths to fixed ones so
/// no path of this machine reaches the artifact.
pub fn write_cc_wrapper(
    path: &Path,
    real_cc: &str,
    maps: &[(PathBuf, String)],
) -> Result<(), FsError> {
    let mut script = String::from(
        "#!/bin/sh\n# azb compiler wrapper: portable CPU flags, fixed paths.\n\
         for arg; do\n  shift\n  case \"$arg\" in\n    -march=native|-mtune=native|-mcpu=native) ;;\n    \
         *) set -- \"$@\" \"$arg\" ;;\n  esac\ndone\n",
    );
    script.push_str(&format!(
        "exec {}{} \"$@\"\n",
        shell_quote(real_cc),
        map_flags(maps, "-ffile-prefix-map")
    ));
    write_script(path, &script)
}

/// ` 'OPTION=FROM=TO'` for each map, shell-quoted, in order.
pub(super) fn map_flags(maps: &[(PathBuf, String)], option: &str) -> String {
    maps.iter()
        .map(|(from, to)| {
            format!(
                " {}",
                shell_quote(&format!("{option}={}={to}", from.display()))
            )
        })
        .collect()
}

/// Writes an executable (0755) script.
pub(super) fn write_script(path: &Path, script: &str) -> Result<(), FsError> {
    err::write(path, script).map_err(|e| FsError::new("write", path, e))?;
    use std::os::unix::fs::PermissionsExt;
    err::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| FsError::new("chmod", path, e))
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// How to cut a command off the network here, decided once per process.
fn isolation_prefix() -> Result<&'static [&'static str], Error> {
    static PREFIX: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    let found = PREFIX.get_or_init(|| {
        let candidates: [&'static [&'static str]; 2] = [
            &["unshare", "--net", "--"],
            &["unshare", "--map-root-user", "--net", "--"],
        ];
        let mut last = String::new();
        for prefix in candidates {
            match Command::new(prefix[0])
                .args(&prefix[1..])
                .arg("true")
                .output()
            {
                Ok(out) if out.status.success() => return Ok(prefix),
                Ok(out) => last = String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    });
    found
        .clone()
        .map_err(|detail| Error::NoNetworkIsolation { detail })
}

impl Session {
    /// Runs `step`, appending its output to the log; a failure carries the log's tail.
    pub fn run(&self, step: &Step, toolchain: &HostToolchain) -> Result<(), Error> {
        let mut log = err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| FsError::new("open log", &self.log, e))?;
        let line = format!("$ {}  (in {})\n", step.argv.join(" "), step.cwd.display());
        log.write_all(line.as_bytes())
            .map_err(|e| FsError::new("write log", &self.log, e))?;
        let mut argv: Vec<String> = Vec::new();
        if !self.network {
            argv.extend(isolation_prefix()?.iter().map(|s| s.to_string()));
        }
        argv.extend(step.argv.iter().cloned());
        let (reader, writer) =
            std::io::pipe().map_err(|e| FsError::new("create a pipe for", &self.log, e))?;
        let writer_err = writer
            .try_clone()
            .map_err(|e| FsError::new("create a pipe for", &self.log, e))?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&step.cwd)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_err)
            .spawn()
            .map_err(|source| Error::Spawn {
                name: self.name.clone(),
                program: argv[0].clone(),
                source,
            })?;
        for line in BufReader::new(reader).split(b'\n') {
            let mut line = line.map_err(|e| FsError::new("read build output for", &self.log, e))?;
            line.push(b'\n');
            log.write_all(&line)
                .map_err(|e| FsError::new("write log", &self.log, e))?;
        }
        let status = child.wait().map_err(|source| Error::Spawn {
            name: self.name.clone(),
            program: argv[0].clone(),
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        let _ = log.flush();
        Err(Error::Command {
            name: self.name.clone(),
            platform: toolchain.platform,
            step: step.label.clone(),
            status: status.to_string(),
            tail: log_tail(&self.log, 25),
            log: self.log.clone(),
        })
    }
}

/// The last `lines` lines of a log, indented for display.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = err::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_drops_native_cpu_flags_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("cc");
        write_cc_wrapper(
            &wrapper,
            "echo",
            &[(PathBuf::from("/w/src"), "/build/x".into())],
        )
        .unwrap();
        let out = Command::new(&wrapper)
            .args(["-O2", "-march=native", "a b.c", "-mtune=native", "-c"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "-ffile-prefix-map=/w/src=/build/x -O2 a b.c -c\n"
        );
    }
}
