//! `azb build`: realise the plan (store hits, fetch, parallel builds), record the build as
//! the last one, and assemble the image when an output is given.

use super::args::BuildArgs;
use super::progress::Progress;
use super::settings::{self, GlobalSettings};
use super::{Failure, FailureKind};
use std::collections::BTreeMap;

use crate::assembly;
use crate::build::{self, Docker, DockerExecutor, Executor, HostExecutor, Outcome, Scheduler};
use crate::drv::Plan;
use crate::graph::Graph;
use crate::image::{self, Output};
use crate::recipe::{Platform, Project};
use crate::store::Store;

/// Where a build's result goes.
enum Target {
    /// An OCI layout or a docker-archive.
    Image(Output),
    /// Pushed to a registry (assembled as an OCI layout in the store's tmp/ first), with
    /// an extra tag.
    Registry(Box<crate::remote::Registry>, Option<String>),
    /// One OCI layout per extension under this directory.
    Extensions(std::path::PathBuf),
}

impl Target {
    fn parse(text: &str) -> Result<Self, Failure> {
        if let Some(rest) = text.strip_prefix("registry:") {
            let (registry, tag) = registry_target(rest)?;
            return Ok(Target::Registry(Box::new(registry), tag));
        }
        match text.strip_prefix("extensions:") {
            Some(dir) if !dir.is_empty() => Ok(Target::Extensions(dir.into())),
            _ => text.parse().map(Target::Image).map_err(Failure::input),
        }
    }
}

/// Runs `azb build`.
pub fn run(global: &GlobalSettings, args: &BuildArgs) -> Result<(), Failure> {
    for line in execute(global, args)? {
        println!("{line}");
    }
    Ok(())
}

/// Builds and writes what `args` ask for; returns stdout's lines (digests, extension
/// images), for the caller to print or not.
pub fn execute(global: &GlobalSettings, args: &BuildArgs) -> Result<Vec<String>, Failure> {
    let target = args.output.as_deref().map(Target::parse).transpose()?;
    let project = settings::load_project(global)?;
    let graph = Graph::resolve(&project.recipes, &project.image.recipes).map_err(Failure::input)?;
    let platforms = settings::platforms(args.platform, &project)?;
    if matches!(target, Some(Target::Image(Output::DockerArchive(_)))) && platforms.len() != 1 {
        return Err(Failure::input(miette::miette!(
            help = "pass --platform amd64 or --platform arm64, or use --output oci:DIR for all platforms",
            "a docker-archive holds one platform, but {} are selected",
            platforms.len()
        )));
    }
    let (environments, plan) = settings::plan(&project, &graph, &platforms)?;
    let store = global.store()?;
    let executors = executors(&project, environments, &store, &global.limits)?;
    let fetcher = global.fetcher(&store)?;
    let remote = global.remote()?;
    let progress = Progress::new(global.quiet);
    let scheduler = Scheduler {
        store: &store,
        fetcher: &fetcher,
        executors,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        keep_going: args.keep_going,
        reporter: &progress,
        remote: Some(&remote),
    };
    // What assembly needs of the bases is got ready beside the builds; assembly meets any
    // failure again and reports it.
    let outcome = std::thread::scope(|scope| {
        if target.is_some() {
            scope.spawn(|| {
                if let Err(error) = assembly::prepare_bases(&store, &project, &platforms) {
                    tracing::debug!(%error, "the bases could not be read ahead");
                }
            });
        }
        scheduler.realise(&plan)
    })
    .map_err(classify)?;
    drop(progress);
    record_last_build(&store, &plan, &outcome, &platforms)?;
    if let Some((_, first)) = outcome.failures.first() {
        let kind = classify_kind(first);
        let (failed, built) = (outcome.failures.len(), outcome.built.len());
        for (_, error) in outcome.failures {
            eprintln!("{:?}", miette::Report::new(error));
        }
        eprintln!("error: {failed} of {} derivation(s) failed", failed + built);
        return Err(Failure { kind, report: None });
    }
    if !global.quiet {
        eprintln!(
            "azb: {} built, {} substituted, {} from the store",
            outcome.built.len(),
            outcome.substituted.len(),
            outcome.artifacts.len() - outcome.built.len() - outcome.substituted.len()
        );
    }
    let Some(target) = target else {
        return Ok(Vec::new());
    };
    let request = || {
        assembly::image_request(&store, &project, &graph, &plan, &outcome, &platforms)
            .map_err(assembly_request_failure)
    };
    match target {
        Target::Image(output) => {
            let summary = image::assemble(&request()?, &output).map_err(assembly_failure)?;
            Ok(digests(&summary))
        }
        Target::Registry(registry, tag) => {
            let summary = push(global, &store, &request()?, &registry, tag)?;
            Ok(digests(&summary))
        }
        Target::Extensions(dir) => {
            let images =
                assembly::extension_images(&store, &project, &graph, &plan, &outcome, &platforms)
                    .map_err(assembly_request_failure)?;
            write_extensions(global, &store, &project, &images, &dir)
        }
    }
}

/// Writes the extension images under `dir`; returns `<name>:<tag> <index digest>` per
/// extension.
fn write_extensions(
    global: &GlobalSettings,
    store: &Store,
    project: &Project,
    images: &[image::ExtensionImage],
    dir: &std::path::Path,
) -> Result<Vec<String>, Failure> {
    if images.is_empty() {
        return Err(Failure::input(miette::miette!(
            help = "extension images are made of the recipes of kind Extension that the image definition selects",
            "{} has no extension: there is nothing to write to {}",
            project.image.name,
            dir.display()
        )));
    }
    let summaries = image::assemble_extensions(images, dir, Some(&store.layout().memo()))
        .map_err(assembly_failure)?;
    if !global.quiet {
        eprintln!(
            "azb: {} extension image(s) in {}",
            summaries.len(),
            dir.display()
        );
    }
    Ok(summaries
        .iter()
        .map(|s| format!("{}:{} {}", s.name, s.tag, s.index_digest))
        .collect())
}

/// Assembles `request` as an OCI layout in the store's tmp/ and pushes it to `target`
/// under the image's tags and `tag`.
fn push(
    global: &GlobalSettings,
    store: &Store,
    request: &image::ImageRequest,
    target: &crate::remote::Registry,
    tag: Option<String>,
) -> Result<image::ImageSummary, Failure> {
    let layout = tempfile::Builder::new()
        .prefix("push-")
        .tempdir_in(store.layout().tmp())
        .map_err(Failure::environment)?;
    let summary = image::assemble(request, &Output::OciDir(layout.path().to_owned()))
        .map_err(assembly_failure)?;
    let mut tags = request.tags.clone();
    tags.extend(tag);
    let mount_from: Vec<String> = global
        .cache_config()?
        .substituters
        .iter()
        .filter_map(|url| crate::remote::Registry::check(url).ok())
        .filter(|(host, _)| *host == target.registry())
        .map(|(_, repository)| repository.to_owned())
        .collect();
    let pushed = target
        .push_image(layout.path(), &request.tags[0], &tags, &mount_from)
        .map_err(Failure::environment)?;
    if !global.quiet {
        eprintln!(
            "azb: pushed {}/{} as {}: {} blob(s) uploaded, {} mounted, {} already there",
            target.registry(),
            target.repository(),
            tags.join(", "),
            pushed.uploaded,
            pushed.mounted,
            pushed.present
        );
    }
    Ok(summary)
}

/// `HOST/REPO[:TAG]` as a registry to push to and an extra tag.
fn registry_target(text: &str) -> Result<(crate::remote::Registry, Option<String>), Failure> {
    let (name, tag) = match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && name.contains('/') => {
            (name, Some(tag.to_owned()))
        }
        _ => (text, None),
    };
    let registry = crate::remote::Registry::open(&format!("oci://{name}")).map_err(|e| {
        Failure::input(miette::miette!(
            help = "--output registry:HOST[:PORT]/REPO[:TAG]",
            "{e}"
        ))
    })?;
    Ok((registry, tag))
}

fn assembly_request_failure(e: assembly::Error) -> Failure {
    if e.is_input() {
        Failure::input(e)
    } else {
        Failure::environment(e)
    }
}

fn assembly_failure(e: image::Error) -> Failure {
    match e {
        // What the recipes say (or leave out) is the user's to fix.
        image::Error::MissingLibrary { .. } | image::Error::BadTag { .. } => Failure::input(e),
        other => Failure::environment(other),
    }
}

/// The image index's digest, else each platform's manifest digest: stdout's data.
fn digests(summary: &image::ImageSummary) -> Vec<String> {
    match &summary.index_digest {
        Some(digest) => vec![digest.to_string()],
        None => summary
            .manifests
            .iter()
            .map(|(_, digest)| digest.to_string())
            .collect(),
    }
}

/// The executor of each platform: the host's toolchain, or builder containers.
fn executors(
    project: &Project,
    environments: settings::Environments,
    store: &Store,
    limits: &build::Limits,
) -> Result<BTreeMap<Platform, Box<dyn Executor>>, Failure> {
    let mut out: BTreeMap<Platform, Box<dyn Executor>> = BTreeMap::new();
    for (platform, environment) in environments {
        let executor: Box<dyn Executor> = match environment {
            settings::Environment::Host(toolchain, _) => Box::new(HostExecutor {
                toolchain,
                store: store.clone(),
                network: crate::env::flag(crate::env::BUILD_NETWORK),
            }),
            settings::Environment::Docker { prefix } => Box::new(
                DockerExecutor::new(
                    Docker::default(),
                    platform,
                    settings::lock(project)?.clone(),
                    prefix,
                    project.image.pg_major,
                    store.clone(),
                    crate::env::flag(crate::env::BUILD_NETWORK),
                )
                .with_limits(limits.clone()),
            ),
        };
        out.insert(platform, executor);
    }
    Ok(out)
}

/// Remembers, per platform, the derivations of this build for `plan`'s "what changed".
fn record_last_build(
    store: &Store,
    plan: &Plan<'_>,
    outcome: &Outcome,
    platforms: &[Platform],
) -> Result<(), Failure> {
    for &platform in platforms {
        let mut last = store.last_build(platform).map_err(Failure::environment)?;
        for planned in plan.for_platform(platform) {
            if outcome.artifacts.contains_key(&planned.hash) {
                last.insert(planned.drv.name.clone(), planned.hash);
            }
        }
        store
            .set_last_build(platform, &last)
            .map_err(Failure::environment)?;
    }
    Ok(())
}

fn classify_kind(error: &build::Error) -> FailureKind {
    match error {
        build::Error::Fetch {
            source: crate::fetch::Error::CommitMissing { .. },
            ..
        } => FailureKind::Input,
        // The machine's memory, or the setting that shares it out.
        build::Error::OutOfMemory { .. } => FailureKind::Environment,
        // What the recipe pins or its source lacks is the user's to fix.
        build::Error::CargoProject { .. }
        | build::Error::BadToolVersion { .. }
        | build::Error::NoSubdir { .. }
        | build::Error::LockMissing { .. } => FailureKind::Input,
        build::Error::Command { .. }
        | build::Error::OutsidePrefix { .. }
        | build::Error::WrongMachine { .. }
        | build::Error::BuildPathLeak { .. }
        | build::Error::Empty { .. }
        | build::Error::DependencyFailed { .. } => FailureKind::Build,
        _ => FailureKind::Environment,
    }
}

fn classify(error: build::Error) -> Failure {
    Failure::diagnostic(classify_kind(&error), error)
}
