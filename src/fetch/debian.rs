//! Debian packages: resolving a set of wanted packages against the archive's index into the
//! exact packages (name, version, architecture, sha256) an empty system would install, and
//! checking that locked packages are still served. apt does the resolving, against the
//! index this machine last fetched (`apt-get update`) and only the Debian sources of the
//! apt sources file azb is given, with nothing installed and no recommends, so the answer
//! does not depend on what this machine has installed.
//!
//! Owns the talk with apt. Never writes the lock (the caller does) nor makes images.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Error;
use crate::fs::{FsError, err};
use crate::recipe::LockedPackage;
use crate::store::Store;

/// The apt sources azb resolves against: `AZB_APT_SOURCES`, else the host's Debian sources.
#[derive(Debug, Clone)]
pub struct DebianIndex {
    /// A deb822 `.sources` or one-line `.list` file naming the Debian archive.
    pub sources: PathBuf,
    /// The machine's own architecture (the builders' native one).
    pub native: String,
}

impl DebianIndex {
    /// The sources named by `AZB_APT_SOURCES`, else `/etc/apt/sources.list.d/debian.sources`,
    /// else `/etc/apt/sources.list`.
    pub fn from_env() -> Result<Self, Error> {
        let sources = crate::env::path(crate::env::APT_SOURCES)
            .or_else(|| {
                [
                    "/etc/apt/sources.list.d/debian.sources",
                    "/etc/apt/sources.list",
                ]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
            })
            .ok_or(Error::NoAptSources)?;
        let native = Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .ok_or(Error::NoDpkg)?;
        Ok(Self { sources, native })
    }

    /// The exact packages an empty system installs for `wanted` (apt names, `name:arch`,
    /// `name=version` or apt patterns), sorted by name and architecture.
    pub fn resolve(&self, wanted: &[String]) -> Result<Vec<LockedPackage>, Error> {
        self.resolve_as(&self.native, wanted)
    }

    /// Like [`resolve`](Self::resolve), for a system whose own architecture is `arch`
    /// (an image of another platform: its packages, and what they need, are that
    /// architecture's).
    pub fn resolve_as(&self, arch: &str, wanted: &[String]) -> Result<Vec<LockedPackage>, Error> {
        let scratch = tempfile::tempdir()
            .map_err(|e| FsError::new("create a directory for apt in", "/tmp", e))?;
        let mut command = self.apt_get(scratch.path(), true, arch)?;
        command.arg("install").args(wanted);
        let output = command.output().map_err(|source| Error::Apt {
            action: "run apt-get",
            detail: source.to_string(),
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Resolve {
                wanted: wanted.join(" "),
                detail: stderr
                    .lines()
                    .chain(stdout.lines())
                    .filter(|l| !l.trim().is_empty())
                    .take(12)
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        let mut packages = stdout
            .lines()
            .filter(|l| l.starts_with('\''))
            .map(parse_uri_line)
            .collect::<Result<Vec<_>, _>>()?;
        packages.sort();
        packages.dedup();
        Ok(packages)
    }

    /// Fails, naming the first one, unless every package of `locked` (a system whose own
    /// architecture is `arch`) is still served at its version with its sha256.
    pub fn check_served(&self, arch: &str, locked: &[&LockedPackage]) -> Result<(), Error> {
        let specs: Vec<String> = locked.iter().map(|p| p.apt_spec()).collect();
        let served = self.resolve_as(arch, &specs).map_err(|e| match e {
            Error::Resolve { detail, .. } => Error::NotServed { detail },
            other => other,
        })?;
        for package in locked {
            let found = served
                .iter()
                .find(|s| s.name == package.name && s.arch == package.arch);
            match found {
                Some(s) if s.version == package.version && s.sha256 == package.sha256 => {}
                _ => {
                    return Err(Error::NotServed {
                        detail: format!(
                            "{package} is no longer served with the locked sha256 {}",
                            package.sha256
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The .deb of `package` in the store (`debs/<sha256>.deb`), downloaded first if it is
    /// not there; its sha256 is checked against the lock either way.
    pub fn fetch_deb(&self, store: &Store, package: &LockedPackage) -> Result<PathBuf, Error> {
        let target = store.layout().deb(&package.sha256);
        if target.is_file() && sha256_file(&target)? == package.sha256 {
            return Ok(target);
        }
        let tmp = store.layout().tmp();
        err::create_dir_all(&tmp).map_err(|e| FsError::new("create directory", &tmp, e))?;
        let scratch = tempfile::Builder::new()
            .prefix("deb-")
            .tempdir_in(&tmp)
            .map_err(|e| FsError::new("create a directory in", &tmp, e))?;
        let download = scratch.path().join("download");
        err::create_dir_all(&download)
            .map_err(|e| FsError::new("create directory", &download, e))?;
        // `download` writes into the working directory.
        let mut command = self.apt_get(scratch.path(), false, &self.native)?;
        command
            .arg("download")
            .arg(package.apt_spec())
            .current_dir(&download);
        let output = command.output().map_err(|source| Error::Apt {
            action: "run apt-get download",
            detail: source.to_string(),
        })?;
        if !output.status.success() {
            return Err(Error::NotServed {
                detail: format!(
                    "{package}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        let file = crate::fs::sorted_entries(&download)?
            .into_iter()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| Error::NotServed {
                detail: format!("{package}: apt-get download wrote no .deb"),
            })?;
        let found = sha256_file(&file)?;
        if found != package.sha256 {
            return Err(Error::NotServed {
                detail: format!(
                    "{package} downloaded with sha256 {found}, but builders.lock says {}",
                    package.sha256
                ),
            });
        }
        let parent = target.parent().unwrap_or(&target);
        err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
        err::rename(&file, &target).map_err(|e| FsError::new("move into place", &target, e))?;
        Ok(target)
    }

    /// apt-get with a private state: nothing installed, only these sources, no recommends,
    /// both architectures known; with `print_uris`, what would be downloaded is printed
    /// (with sha256) instead.
    fn apt_get(&self, scratch: &Path, print_uris: bool, arch: &str) -> Result<Command, Error> {
        let (status, parts, cache) = (
            scratch.join("status"),
            scratch.join("sources.list.d"),
            scratch.join("cache"),
        );
        err::write(&status, "").map_err(|e| FsError::new("write", &status, e))?;
        err::create_dir_all(&parts).map_err(|e| FsError::new("create directory", &parts, e))?;
        err::create_dir_all(cache.join("archives/partial"))
            .map_err(|e| FsError::new("create directory", &cache, e))?;
        let name = if self.sources.extension().is_some_and(|e| e == "sources") {
            "debian.sources"
        } else {
            "debian.list"
        };
        err::copy(&self.sources, parts.join(name))
            .map_err(|e| FsError::new("copy apt sources from", &self.sources, e))?;
        let mut command = Command::new("apt-get");
        command.env("LC_ALL", "C").arg("-qq");
        if print_uris {
            command.arg("--print-uris");
        }
        for (key, value) in [
            ("Dir::State::status", status.display().to_string()),
            ("Dir::Etc::SourceParts", parts.display().to_string()),
            ("Dir::Etc::SourceList", "/dev/null".to_owned()),
            ("Dir::Cache", cache.display().to_string()),
            ("APT::Install-Recommends", "false".to_owned()),
            ("APT::Install-Suggests", "false".to_owned()),
            ("Acquire::ForceHash", "SHA256".to_owned()),
            ("APT::Architecture", arch.to_owned()),
            ("APT::Architectures::", arch.to_owned()),
            ("APT::Architectures::", "arm64".to_owned()),
            ("APT::Architectures::", "amd64".to_owned()),
        ] {
            command.arg("-o").arg(format!("{key}={value}"));
        }
        Ok(command)
    }
}

/// One Debian package for an image's runtime layer, unpacked.
#[derive(Debug, Clone)]
pub struct RuntimePackage {
    /// Package name.
    pub name: String,
    /// Debian architecture (`arm64`, `all`).
    pub arch: String,
    /// Its data tar (`dpkg-deb --fsys-tarfile`).
    pub data: Vec<u8>,
    /// Its control paragraph (`dpkg-deb --field`).
    pub control: String,
}

impl DebianIndex {
    /// The locked `packages`, each fetched into the store (once) and unpacked.
    pub fn runtime_packages(
        &self,
        store: &Store,
        packages: &[&LockedPackage],
    ) -> Result<Vec<RuntimePackage>, Error> {
        packages
            .iter()
            .map(|package| {
                let deb = self.fetch_deb(store, package)?;
                let (data, control) = deb_contents(&deb)?;
                Ok(RuntimePackage {
                    name: package.name.clone(),
                    arch: package.arch.clone(),
                    data,
                    control,
                })
            })
            .collect()
    }
}

/// The files and control fields of a .deb: its data tar (uncompressed, as
/// `dpkg-deb --fsys-tarfile` gives it) and its control paragraph.
pub fn deb_contents(deb: &Path) -> Result<(Vec<u8>, String), Error> {
    let run = |args: &[&str]| -> Result<Vec<u8>, Error> {
        let output = Command::new("dpkg-deb")
            .args(args)
            .arg(deb)
            .output()
            .map_err(|source| Error::Apt {
                action: "run dpkg-deb",
                detail: source.to_string(),
            })?;
        if !output.status.success() {
            return Err(Error::Apt {
                action: "read a .deb",
                detail: format!(
                    "{}: {}",
                    deb.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(output.stdout)
    };
    let data = run(&["--fsys-tarfile"])?;
    let control = String::from_utf8_lossy(&run(&["--field"])?).into_owned();
    Ok((data, control))
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let bytes = err::read(path).map_err(|e| FsError::new("read", path, e))?;
    Ok(crate::digest::Sha256::of(&bytes).to_string())
}

/// One line of `apt-get --print-uris`: `'URI' name_version_arch.deb SIZE SHA256:hex`.
fn parse_uri_line(line: &str) -> Result<LockedPackage, Error> {
    let bad = || Error::Apt {
        action: "read apt-get --print-uris",
        detail: format!("unexpected line `{line}`"),
    };
    let mut fields = line.split_whitespace().skip(1);
    let (file, _size, hash) = (
        fields.next().ok_or_else(bad)?,
        fields.next().ok_or_else(bad)?,
        fields.next().ok_or_else(bad)?,
    );
    let sha256 = hash.strip_prefix("SHA256:").ok_or_else(bad)?;
    let stem = file.strip_suffix(".deb").ok_or_else(bad)?;
    let mut parts = stem.split('_');
    let (name, version, arch) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    if parts.next().is_some() || sha256.len() != 64 {
        return Err(bad());
    }
    Ok(LockedPackage {
        name: name.to_owned(),
        version: version.replace("%3a", ":"),
        arch: arch.to_owned(),
        sha256: sha256.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_lines_give_name_version_arch_and_sha256() {
        let hash = "1f".repeat(32);
        let line = format!(
            "'http://mirror/pool/main/p/perl/perl-base_5.36.0-7%2bdeb12u2_amd64.deb' perl-base_1%3a5.36.0-7+deb12u2_amd64.deb 1609772 SHA256:{hash}"
        );
        assert_eq!(
            parse_uri_line(&line).unwrap(),
            LockedPackage {
                name: "perl-base".into(),
                version: "1:5.36.0-7+deb12u2".into(),
                arch: "amd64".into(),
                sha256: hash,
            }
        );
        assert!(parse_uri_line("'u' a_1_amd64.deb 3 MD5Sum:00").is_err());
        assert!(parse_uri_line("'u' a_1.deb 3 SHA256:00").is_err());
    }
}
