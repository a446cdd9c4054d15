//! cargo-pgrx in the store: each version a recipe pins is installed once into the store's
//! `tools/` (`cargo install --locked` into a private root, renamed into place under a
//! lock), with network, before any build starts; builds find it there.
//!
//! Owns the tools/ entries of cargo-pgrx; never fetches crates nor builds.

use std::path::PathBuf;

use crate::fs::{FsError, LockFile, err};
use crate::recipe::RecipeName;
use crate::store::Store;

use super::cargo::{cargo_command, run, scratch};
use crate::build::Error;
use crate::build::rust::RustToolchain;

/// `tools/cargo-pgrx-<version>/bin/cargo-pgrx` in the store, for a plain `version`
/// (`0.16.1`, the rule recipes are loaded with): the one place a version becomes a path,
/// so nothing else could escape the tools directory or mean something else to cargo.
fn cargo_pgrx_path(store: &Store, name: &RecipeName, version: &str) -> Result<PathBuf, Error> {
    if !crate::recipe::is_version(version) {
        return Err(Error::BadToolVersion {
            name: name.clone(),
            tool: "cargo-pgrx",
            version: version.to_owned(),
        });
    }
    Ok(store
        .layout()
        .tool("cargo-pgrx", version)
        .join("bin/cargo-pgrx"))
}

/// Installs cargo-pgrx `version` into the store's tools/ unless it is there: `cargo
/// install --locked` into a private root, renamed into place under a lock.
pub(super) fn install_cargo_pgrx(
    store: &Store,
    rust: &RustToolchain,
    name: &RecipeName,
    version: &str,
) -> Result<PathBuf, Error> {
    let bin = cargo_pgrx_path(store, name, version)?;
    if bin.is_file() {
        return Ok(bin);
    }
    let _lock = LockFile::acquire(
        &store.layout().lock(&format!("tool-cargo-pgrx-{version}")),
        &format!("the install of cargo-pgrx {version}"),
    )?;
    if bin.is_file() {
        return Ok(bin);
    }
    tracing::info!(version, "installing cargo-pgrx");
    let work = scratch(store, &format!("cargo-pgrx-{version}-"))?;
    let root = work.path().join("root");
    let mut cmd = cargo_command(store, rust, work.path());
    cmd.env("CARGO_TARGET_DIR", work.path().join("target"))
        .args(["install", "--locked", "--root"])
        .arg(&root)
        .args(["--version", &format!("={version}"), "cargo-pgrx"]);
    let log = work.path().join("install.log");
    if let Err(failed) = run(cmd, &log)? {
        return Err(Error::ToolInstall {
            name: name.clone(),
            tool: "cargo-pgrx",
            version: version.to_owned(),
            status: failed.status,
            tail: failed.tail,
        });
    }
    for bookkeeping in [".crates.toml", ".crates2.json"] {
        let path = root.join(bookkeeping);
        if path.exists() {
            err::remove_file(&path).map_err(|e| FsError::new("remove", &path, e))?;
        }
    }
    let target = store.layout().tool("cargo-pgrx", version);
    let parent = target.parent().unwrap_or(&target);
    err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    err::rename(&root, &target).map_err(|e| FsError::new("move into place", &target, e))?;
    Ok(bin)
}

/// The installed cargo-pgrx `version` of the store (put there by [`prepare`]).
pub fn installed_cargo_pgrx(
    store: &Store,
    name: &RecipeName,
    version: &str,
) -> Result<PathBuf, Error> {
    let cargo_pgrx = cargo_pgrx_path(store, name, version)?;
    if cargo_pgrx.is_file() {
        Ok(cargo_pgrx)
    } else {
        Err(Error::ToolMissing {
            name: name.clone(),
            tool: "cargo-pgrx",
            version: version.to_owned(),
            path: cargo_pgrx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_plain() {
        let name: RecipeName = "x".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for good in ["0.16.1", "0.12.0-beta.1", "1.0.0+local"] {
            assert!(cargo_pgrx_path(&store, &name, good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../0.16.1",
            "0.16/../../x",
            "latest",
            "=0.16.1",
            "0.16.1 --force",
        ] {
            assert!(cargo_pgrx_path(&store, &name, bad).is_err(), "{bad}");
        }
    }
}
