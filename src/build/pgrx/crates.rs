//! The crates of a cargo-pgrx source: its pinned tree exported and checked to be a locked
//! Cargo project, and the crates its Cargo.lock pins fetched into the store's cargo home
//! (`cargo fetch --locked`, offline first, so a warm store needs no network). Part of the
//! fetch phase: builds run offline.
//!
//! Owns the store's cargo home's contents; never installs tools nor builds.

use std::path::PathBuf;

use crate::drv::Planned;
use crate::fetch::Fetcher;
use crate::recipe::RecipeName;
use crate::store::Store;

use super::cargo::{cargo_command, run, scratch};
use crate::build::Error;
use crate::build::rust::RustToolchain;

/// The pinned source exported for `cargo fetch`, checked to be a locked Cargo project.
pub(super) struct Checkout {
    /// Removed when dropped.
    work: tempfile::TempDir,
    /// The package's directory.
    dir: PathBuf,
}

impl Checkout {
    pub(super) fn new(
        store: &Store,
        fetcher: &Fetcher,
        planned: &Planned<'_>,
    ) -> Result<Self, Error> {
        let drv = &planned.drv;
        let recipe = &planned.recipe.recipe;
        let work = scratch(store, &format!("crates-{}-", drv.name))?;
        let src = work.path().join("src");
        fetcher
            .export(recipe.url(), drv.commit, &src)
            .map_err(|source| Error::Fetch {
                name: drv.name.clone(),
                source,
            })?;
        let dir = match &drv.subdir {
            Some(sub) => src.join(sub),
            None => src.clone(),
        };
        let shown = drv.subdir.clone().unwrap_or_else(|| ".".to_owned());
        if !dir.join("Cargo.toml").is_file() {
            return Err(Error::CargoProject {
                name: drv.name.clone(),
                dir: shown,
                missing: "Cargo.toml",
                hint: "a cargo-pgrx recipe builds a Cargo package: point `subdir` at the directory holding the extension's Cargo.toml".into(),
            });
        }
        // The package's own Cargo.lock, or its workspace's.
        let locked = dir
            .ancestors()
            .take_while(|d| d.starts_with(&src))
            .any(|d| d.join("Cargo.lock").is_file());
        if !locked {
            return Err(Error::CargoProject {
                name: drv.name.clone(),
                dir: shown,
                missing: "Cargo.lock",
                hint: "builds are offline and `--locked`, so the source must pin its crates: commit a Cargo.lock upstream (`cargo generate-lockfile`) and re-pin the recipe".into(),
            });
        }
        Ok(Self { work, dir })
    }

    /// Fetches the crates the Cargo.lock pins into the store's cargo home: offline first
    /// (all there already), else from the registry.
    pub(super) fn fetch_crates(
        self,
        store: &Store,
        rust: &RustToolchain,
        name: &RecipeName,
    ) -> Result<(), Error> {
        let manifest = self.dir.join("Cargo.toml");
        let log = self.work.path().join("fetch.log");
        let fetch = |offline: bool| {
            let mut cmd = cargo_command(store, rust, self.work.path());
            cmd.current_dir(&self.dir)
                .args(["fetch", "--locked", "--manifest-path"])
                .arg(&manifest);
            if offline {
                cmd.arg("--offline");
            }
            run(cmd, &log)
        };
        if fetch(true)?.is_ok() {
            return Ok(());
        }
        tracing::info!(%name, "fetching crates");
        fetch(false)?.map_err(|failed| Error::CrateFetch {
            name: name.clone(),
            status: failed.status,
            tail: failed.tail,
        })
    }
}
