//! Preparing and finishing build trees: a private toolchain view (hard links of the shared
//! toolchain, dependencies' artifacts laid on top), and the normalisation of what `make
//! install DESTDIR=…` wrote into the artifact layout (lib/, share/, bin/, include/,
//! licenses/<name>/), checked for the platform's ELF machine; stripping ELF files.

use std::path::{Path, PathBuf};

use super::Error;
use crate::fs::{FsError, err, sorted_entries};
use crate::recipe::{Platform, RecipeName};

/// Mirrors `from` into `to` with hard links (copies across file systems). Files later
/// laid on top must replace links, never write through them: see [`unpack_over`].
pub fn link_tree(from: &Path, to: &Path) -> Result<(), FsError> {
    err::create_dir_all(to).map_err(|e| FsError::new("create directory", to, e))?;
    for entry in sorted_entries(from)? {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(|e| FsError::new("stat", &src, e))?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = err::read_link(&src).map_err(|e| FsError::new("read link", &src, e))?;
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(|e| FsError::new("create symlink", &dst, e))?;
        } else if err::hard_link(&src, &dst).is_err() {
            err::copy(&src, &dst).map_err(|e| FsError::new("copy into", &dst, e))?;
        }
    }
    Ok(())
}

/// Unpacks an artifact tar over `dir`, replacing (never writing through) existing files.
pub fn unpack_over(tar: impl std::io::Read, dir: &Path) -> Result<(), FsError> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| FsError::new("read artifact tar for", dir, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| FsError::new("read artifact tar for", dir, e))?;
        let relative = entry
            .path()
            .map_err(|e| FsError::new("read artifact tar for", dir, e))?
            .into_owned();
        let target = dir.join(&relative);
        if !entry.header().entry_type().is_dir() && err::symlink_metadata(&target).is_ok() {
            err::remove_file(&target).map_err(|e| FsError::new("replace", &target, e))?;
        }
        entry
            .unpack_in(dir)
            .map_err(|e| FsError::new("unpack", &target, e))?;
    }
    Ok(())
}

/// Top-level directories an artifact may hold (besides licenses/).
const ARTIFACT_DIRS: [&str; 4] = ["bin", "include", "lib", "share"];

/// Moves what the build installed under `destdir` + `prefix` into `artifact`, drops what
/// an image must not carry (static libraries, LLVM bitcode, docs), checks the machine of
/// every ELF file (the executor has stripped them), and copies the source's licence files.
pub fn normalize(
    name: &RecipeName,
    platform: Platform,
    destdir: &Path,
    prefix: &Path,
    source_roots: &[PathBuf],
    artifact: &Path,
) -> Result<(), Error> {
    let installed = destdir.join(prefix.strip_prefix("/").unwrap_or(prefix));
    if let Some(stray) = first_outside(destdir, &installed)? {
        return Err(Error::OutsidePrefix {
            name: name.clone(),
            path: stray,
        });
    }
    err::create_dir_all(artifact).map_err(|e| FsError::new("create directory", artifact, e))?;
    if installed.is_dir() {
        for entry in sorted_entries(&installed)? {
            let file_name = entry.file_name();
            if ARTIFACT_DIRS.iter().any(|d| file_name == *d) {
                err::rename(entry.path(), artifact.join(&file_name))
                    .map_err(|e| FsError::new("move", entry.path(), e))?;
            } else {
                return Err(Error::OutsidePrefix {
                    name: name.clone(),
                    path: entry
                        .path()
                        .strip_prefix(destdir)
                        .unwrap_or(&entry.path())
                        .to_owned(),
                });
            }
        }
    }
    for drop in ["lib/bitcode", "share/doc", "share/man"] {
        let path = artifact.join(drop);
        if path.exists() {
            err::remove_dir_all(&path).map_err(|e| FsError::new("remove", &path, e))?;
        }
    }
    check_files(name, platform, artifact, artifact)?;
    copy_licenses(name, source_roots, artifact)
}

/// The first path under `destdir` that is not on the way to or inside `installed`.
fn first_outside(destdir: &Path, installed: &Path) -> Result<Option<PathBuf>, Error> {
    let mut dir = destdir.to_owned();
    for component in installed
        .strip_prefix(destdir)
        .unwrap_or(installed)
        .components()
    {
        if !dir.is_dir() {
            return Ok(None);
        }
        for entry in sorted_entries(&dir)? {
            if entry.file_name() != component.as_os_str() {
                return Ok(Some(
                    entry
                        .path()
                        .strip_prefix(destdir)
                        .unwrap_or(&entry.path())
                        .to_owned(),
                ));
            }
        }
        dir.push(component);
    }
    Ok(None)
}

/// Drops static libraries and libtool files; fails on an ELF file for another machine.
fn check_files(
    name: &RecipeName,
    platform: Platform,
    root: &Path,
    dir: &Path,
) -> Result<(), Error> {
    for (path, kind) in files_under(dir)? {
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        if file_name.ends_with(".a") || file_name.ends_with(".la") {
            err::remove_file(&path).map_err(|e| FsError::new("remove", &path, e))?;
            continue;
        }
        let Some(machine) = kind else { continue };
        if machine != platform.elf_machine() {
            return Err(Error::WrongMachine {
                name: name.clone(),
                file: path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
                platform,
                found: machine,
                expected: platform.elf_machine(),
            });
        }
    }
    Ok(())
}

/// Strips (`--strip-unneeded`) every ELF file under `dir` built for `platform` with the
/// platform's `strip`; files for another machine are left for [`normalize`] to refuse.
pub fn strip_elf_files(
    name: &RecipeName,
    platform: Platform,
    strip: &str,
    dir: &Path,
) -> Result<(), Error> {
    for (path, machine) in files_under(dir)? {
        if machine != Some(platform.elf_machine()) {
            continue;
        }
        let status = std::process::Command::new(strip)
            .arg("--strip-unneeded")
            .arg(&path)
            .status()
            .map_err(|source| Error::Spawn {
                name: name.clone(),
                program: strip.to_owned(),
                source,
            })?;
        if !status.success() {
            return Err(Error::Strip {
                name: name.clone(),
                file: path,
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

/// Every regular file under `dir` (sorted, depth first) with its ELF machine, if ELF.
fn files_under(dir: &Path) -> Result<Vec<(PathBuf, Option<u16>)>, FsError> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| FsError::new("stat", &path, e))?;
        if kind.is_dir() {
            out.extend(files_under(&path)?);
        } else if kind.is_file() {
            let machine = crate::layer::elf_machine_of(&path)?;
            out.push((path, machine));
        }
    }
    Ok(out)
}

fn copy_licenses(name: &RecipeName, roots: &[PathBuf], artifact: &Path) -> Result<(), Error> {
    let dest = artifact.join("licenses").join(name.as_str());
    for root in roots {
        for entry in sorted_entries(root)? {
            let is_licence = crate::recipe::is_license_file(&entry.file_name().to_string_lossy());
            if is_licence && entry.file_type().is_ok_and(|t| t.is_file()) {
                err::create_dir_all(&dest)
                    .map_err(|e| FsError::new("create directory", &dest, e))?;
                let to = dest.join(entry.file_name());
                err::copy(entry.path(), &to)
                    .map_err(|e| FsError::new("copy licence to", &to, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_over_replaces_hard_links_without_touching_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let (orig, view) = (dir.path().join("orig"), dir.path().join("view"));
        err::create_dir_all(orig.join("include")).unwrap();
        err::write(orig.join("include/a.h"), "original").unwrap();
        link_tree(&orig, &view).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "include/a.h", &b"new"[..])
            .unwrap();
        unpack_over(&builder.into_inner().unwrap()[..], &view).unwrap();
        assert_eq!(
            err::read_to_string(view.join("include/a.h")).unwrap(),
            "new"
        );
        assert_eq!(
            err::read_to_string(orig.join("include/a.h")).unwrap(),
            "original"
        );
    }
}
