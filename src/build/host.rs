//! The host executor: runs a build kind's steps on this machine, in a private work
//! directory, with an allow-listed environment, no network (an empty network namespace),
//! a toolchain view (hard links of the toolchain with the dependencies' artifacts laid on
//! top), a compiler wrapper that maps build paths and drops host-specific CPU flags, and
//! every line of output appended to the derivation's log. For quick local work and
//! machines without Docker: it isolates the network only, so builders' system libraries
//! are this machine's (not covered by the builder identity).
//!
//! Only runs things: the driver has already fetched and exported the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::executor::{Executor, Sandbox, SessionSpec, Step, run_logged, shell_quote};
use super::kind::KindPaths;
use super::pg_config;
use super::pgrx::CargoSetup;
use super::rust::host_platform;
use super::tree::{link_tree, strip_elf_files, unpack_over};
use super::{Error, HostToolchain};
use crate::fs::{FsError, err};
use crate::recipe::Build;
use crate::store::Store;

/// Builds on this machine with one platform's host toolchain.
#[derive(Debug)]
pub struct HostExecutor {
    /// The toolchain.
    pub toolchain: HostToolchain,
    /// The store (cargo-pgrx and the crates of Rust builds live there).
    pub store: Store,
    /// Whether steps may reach the network.
    pub network: bool,
}

/// One build on the host.
struct HostSandbox<'a> {
    executor: &'a HostExecutor,
    drv: crate::drv::Derivation,
    paths: KindPaths,
    env: BTreeMap<String, String>,
    log: PathBuf,
}

impl Executor for HostExecutor {
    fn open<'a>(&'a self, spec: &SessionSpec<'_>) -> Result<Box<dyn Sandbox + 'a>, Error> {
        let drv = spec.drv;
        let work = spec.work;
        let dir = |name: &str| -> Result<PathBuf, Error> {
            let path = work.join(name);
            err::create_dir_all(&path).map_err(|e| FsError::new("create directory", &path, e))?;
            Ok(path)
        };
        let (pg, bin, destdir, home, scratch) = (
            work.join("pg"),
            dir("bin")?,
            dir("out")?,
            dir("home")?,
            dir("tmp")?,
        );
        link_tree(&self.toolchain.prefix, &pg)?;
        for object in spec.deps {
            unpack_over(crate::store::read_object(object)?, &pg)?;
        }
        let fixed_prefix = format!("/usr/lib/postgresql/{}", drv.pg_major);
        // Later maps win (gcc and rustc alike): the whole work directory first, then the
        // places that have names of their own.
        let mut maps = vec![
            (work.to_owned(), "/build".to_owned()),
            (spec.source.to_owned(), format!("/build/{}", drv.name)),
            (pg.clone(), fixed_prefix.clone()),
        ];
        let cargo = match spec.build {
            Build::CargoPgrx { pgrx, .. } => {
                maps.push((self.store.layout().cargo_home(), "/cargo".to_owned()));
                Some(CargoSetup::on_host(
                    &self.store,
                    &drv.name,
                    drv.platform,
                    pgrx,
                    work,
                    &bin,
                    &maps,
                )?)
            }
            _ => None,
        };
        let cc = bin.join("cc");
        write_cc_wrapper(&cc, &self.toolchain.cc, &maps)?;
        // A toolchain of another architecture has a pg_config that runs under emulation:
        // answered natively (pg_config.rs).
        let pg_config = if host_platform() == Some(drv.platform) {
            pg.join("bin/pg_config")
        } else {
            let stand_in = bin.join("pg_config");
            let real = pg.join("bin/pg_config").display().to_string();
            let answers = work.join("pg_config.answers").display().to_string();
            write_script(&stand_in, &pg_config::stand_in(&real, &answers))?;
            stand_in
        };
        let mut env = spec.env.clone();
        env.insert(
            "PATH".into(),
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        );
        env.insert("HOME".into(), home.display().to_string());
        env.insert("TMPDIR".into(), scratch.display().to_string());
        let paths = KindPaths {
            dir: match &drv.subdir {
                Some(sub) => spec.source.join(sub),
                None => spec.source.to_owned(),
            },
            pg_config,
            cc,
            destdir,
            make_jobs: spec.make_jobs,
            image_prefix: fixed_prefix,
            prefix: pg,
            out_of_tree: work.join("out-of-tree"),
            cargo,
        };
        Ok(Box::new(HostSandbox {
            executor: self,
            drv: drv.clone(),
            paths,
            env,
            log: spec.log.to_owned(),
        }))
    }
}

impl Sandbox for HostSandbox<'_> {
    fn paths(&self) -> &KindPaths {
        &self.paths
    }

    fn build(
        self: Box<Self>,
        steps: &[Step],
        started: &mut dyn FnMut(&Step),
        into: &Path,
    ) -> Result<(), Error> {
        for step in steps {
            started(step);
            self.run(step)?;
        }
        let toolchain = &self.executor.toolchain;
        strip_elf_files(
            &self.drv.name,
            toolchain.platform,
            &toolchain.strip,
            &self.paths.destdir,
        )?;
        err::rename(&self.paths.destdir, into)
            .map_err(|e| FsError::new("move the installed files from", &self.paths.destdir, e))?;
        Ok(())
    }
}

impl HostSandbox<'_> {
    fn run(&self, step: &Step) -> Result<(), Error> {
        let mut argv: Vec<String> = Vec::new();
        if !self.executor.network {
            argv.extend(isolation_prefix()?.iter().map(|s| s.to_string()));
        }
        argv.extend(step.argv.iter().cloned());
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&step.cwd)
            .env_clear()
            .envs(&self.env);
        run_logged(command, step, &self.drv, &self.log)
    }
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

/// Writes an executable (0755) script. A child another thread is starting holds every
/// file this process has open until it execs; a script it holds open for writing cannot
/// be run meanwhile ("text file busy", seen when make ran the pg_config stand-in just
/// written). So this process writes only the text, to a plain file, and `install` writes
/// the script: no process but `install` ever has the script open for writing.
pub(super) fn write_script(path: &Path, script: &str) -> Result<(), FsError> {
    let text = PathBuf::from(format!("{}.text", path.display()));
    err::write(&text, script).map_err(|e| FsError::new("write", &text, e))?;
    let installed = Command::new("install")
        .args(["-m", "0755"])
        .arg(&text)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .and_then(|out| match out.status.success() {
            true => Ok(()),
            false => Err(std::io::Error::other(format!(
                "install: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        });
    let _ = err::remove_file(&text);
    installed.map_err(|e| FsError::new("write", path, e))
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
        let out = crate::fs::output_of_written_program(Command::new(&wrapper).args([
            "-O2",
            "-march=native",
            "a b.c",
            "-mtune=native",
            "-c",
        ]));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "-ffile-prefix-map=/w/src=/build/x -O2 a b.c -c\n"
        );
    }
}
