//! `azb lock update`: resolve the builders' Debian packages and write builders.lock.

use std::collections::{BTreeMap, BTreeSet};

use super::Failure;
use super::settings::{self, GlobalSettings};
use crate::fetch::DebianIndex;
use crate::fs::write_atomic;
use crate::recipe::{LOCK_FILE, Toolchain};

/// Runs `azb lock update`.
pub fn update(global: &GlobalSettings) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let toolchains: BTreeMap<_, _> = project
        .image
        .platforms
        .iter()
        .filter(|(_, def)| matches!(def.toolchain, Toolchain::Docker { .. }))
        .map(|(&platform, def)| {
            let prefix = def.toolchain.prefix(project.image.pg_major, platform);
            (platform, project.path(&prefix))
        })
        .collect();
    if toolchains.is_empty() {
        return Err(Failure::input(miette::miette!(
            help = "builder containers are the default: leave `toolchain` out of a platform, or write Docker()",
            "no platform of {} builds in builder containers, so there is nothing to lock",
            project.image_file.name
        )));
    }
    let enabled = || {
        project
            .recipes
            .recipes
            .values()
            .map(|l| &l.recipe)
            .filter(|r| r.enabled)
    };
    let sorted = |packages: &[String]| {
        let mut set = packages.to_vec();
        set.sort();
        set.dedup();
        set
    };
    let sets: BTreeSet<Vec<String>> = enabled().map(|r| sorted(&r.build_packages)).collect();
    let emulated_sets: BTreeSet<Vec<String>> = enabled()
        .filter(|r| r.emulate_arm64)
        .map(|r| sorted(&r.build_packages))
        .collect();
    let mut runtime: BTreeSet<String> = enabled()
        .flat_map(|r| r.runtime_packages.iter().cloned())
        .collect();
    runtime.extend(
        project
            .companion_packages()
            .map_err(settings::project_failure)?,
    );
    let index = DebianIndex::from_env().map_err(Failure::environment)?;
    let lock = crate::build::resolve_lock(&index, &sets, &emulated_sets, &runtime, &toolchains)
        .map_err(Failure::environment)?;
    let path = project.root.join(LOCK_FILE);
    write_atomic(&project.root, &path, lock.render().as_bytes()).map_err(Failure::environment)?;
    // A committed project file: readable by everyone, like the recipes.
    use std::os::unix::fs::PermissionsExt;
    crate::fs::err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Failure::environment(crate::fs::FsError::new("chmod", &path, e)))?;
    for (platform, locked) in &lock.platforms {
        let extra: usize = locked.sets.values().map(Vec::len).sum();
        eprintln!(
            "azb: {platform}: {} base packages, {} sets adding {extra}, {} runtime packages",
            locked.base.len(),
            locked.sets.len(),
            locked.runtime.len()
        );
    }
    Ok(())
}
