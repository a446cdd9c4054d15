//! `azb stack load NAME`: build, as docker-archives, every image a Compose stack runs that
//! the project's image definitions make, and `docker load` them. stdout: each reference
//! loaded.

use super::args::{BuildArgs, PlatformArg};
use super::settings::{self, GlobalSettings};
use super::{Failure, build};
use crate::build::Docker;

/// Runs `azb stack load`.
pub fn load(
    global: &GlobalSettings,
    stack: &str,
    platform: Option<PlatformArg>,
    jobs: Option<usize>,
) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let images = project
        .stack_images(&global.image, stack)
        .map_err(settings::project_failure)?;
    for reference in &images.elsewhere {
        tracing::warn!(
            "stacks/{stack}/compose.yml runs {reference}, which no image definition of this project makes: load it yourself"
        );
    }
    let platform = platform.unwrap_or(match std::env::consts::ARCH {
        "aarch64" => PlatformArg::Arm64,
        _ => PlatformArg::Amd64,
    });
    if platform == PlatformArg::All {
        return Err(Failure::input(miette::miette!(
            help = "pass --platform amd64 or --platform arm64",
            "Docker loads one platform of an image"
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix("stack-")
        .tempdir_in(global.store()?.layout().tmp())
        .map_err(Failure::environment)?;
    let docker = Docker::default();
    for (index, (definition, name)) in images.made.iter().enumerate() {
        if !global.quiet {
            eprintln!(
                "azb: [{}/{}] {name} ({})",
                index + 1,
                images.made.len(),
                definition
                    .strip_prefix(&global.project)
                    .unwrap_or(definition)
                    .display()
            );
        }
        let archive = tmp.path().join(format!("{index}.tar"));
        let one = GlobalSettings {
            image: definition.clone(),
            ..global.clone()
        };
        build::execute(
            &one,
            &BuildArgs {
                platform,
                output: Some(format!("docker-archive:{}", archive.display())),
                jobs,
                keep_going: false,
            },
        )?;
        let path = archive.to_string_lossy();
        let loaded = docker
            .output(&["load", "-i", &path])
            .map_err(Failure::environment)?;
        for line in loaded.lines() {
            if let Some(reference) = line.strip_prefix("Loaded image: ") {
                println!("{reference}");
            }
        }
    }
    Ok(())
}
