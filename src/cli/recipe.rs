//! `azb recipe list | show | check | add | bump | outdated`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::args::{KindArg, RecipeAddArgs, RecipeCommand, RecipeListArgs};
use super::settings::{self, GlobalSettings};
use super::{Failure, FailureKind};
use crate::fetch::{Fetcher, TagState};
use crate::graph::Graph;
use crate::recipe::{
    Project, RecipeKind, RecipeName, RecipeSelection, SourceFile, newer_releases, set_pin,
    set_version,
};

/// Runs an `azb recipe` command.
pub fn run(global: &GlobalSettings, command: &RecipeCommand) -> Result<(), Failure> {
    match command {
        RecipeCommand::List(args) => list(global, args),
        RecipeCommand::Show { name } => show(global, name),
        RecipeCommand::Check { online } => check(global, *online),
        RecipeCommand::Outdated => outdated(global),
        RecipeCommand::Add(args) => add(global, args),
        RecipeCommand::Bump { name, rev } => bump(global, name, rev),
    }
}

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    kind: &'static str,
    category: &'a str,
    version: &'a str,
    build: &'static str,
    enabled: bool,
    commit: Option<String>,
    tag: Option<&'a str>,
}

fn list(global: &GlobalSettings, args: &RecipeListArgs) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let rows: Vec<Row<'_>> = project
        .recipes
        .recipes
        .values()
        .map(|l| &l.recipe)
        .filter(|r| match args.kind {
            None => true,
            Some(KindArg::Extension) => r.kind == RecipeKind::Extension,
            Some(KindArg::Tool) => r.kind == RecipeKind::Tool,
            Some(KindArg::Builtin) => r.kind == RecipeKind::Builtin,
        })
        .filter(|r| args.category.as_ref().is_none_or(|c| &r.category == c))
        .filter(|r| (!args.enabled || r.enabled) && (!args.disabled || !r.enabled))
        .map(|r| Row {
            name: r.name.as_str(),
            kind: r.kind.as_str(),
            category: &r.category,
            version: &r.version,
            build: r.build.kind_name(),
            enabled: r.enabled,
            commit: r.commit().map(|c| c.to_string()),
            tag: r.tag(),
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialise")
        );
        return Ok(());
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<9}  {:<13}  {:<10}  {:<10}  ENABLED",
        "NAME", "KIND", "CATEGORY", "VERSION", "BUILD"
    );
    for r in &rows {
        println!(
            "{:<width$}  {:<9}  {:<13}  {:<10}  {:<10}  {}",
            r.name,
            r.kind,
            r.category,
            r.version,
            r.build,
            if r.enabled { "yes" } else { "no" }
        );
    }
    Ok(())
}

/// Every derivation hash of the project's image, by (name, platform).
fn hashes(project: &Project) -> Result<BTreeMap<(String, String), String>, Failure> {
    let graph = Graph::resolve(&project.recipes, &project.image.recipes).map_err(Failure::input)?;
    let platforms: Vec<_> = project.image.platforms.keys().copied().collect();
    let (_, plan) = settings::plan(project, &graph, &platforms)?;
    Ok(plan
        .items
        .iter()
        .map(|p| {
            (
                (p.drv.name.to_string(), p.drv.platform.to_string()),
                p.hash.to_string(),
            )
        })
        .collect())
}

fn show(global: &GlobalSettings, name: &str) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let Some(loaded) = project.recipes.get(name) else {
        return Err(Failure::input(miette::miette!(
            help = "`azb recipe list` shows the names",
            "no recipe `{name}`"
        )));
    };
    let text = ron::ser::to_string_pretty(
        &loaded.recipe,
        ron::ser::PrettyConfig::default().struct_names(true),
    )
    .expect("a recipe serialises");
    println!("{text}");
    for ((recipe, platform), hash) in hashes(&project)? {
        if recipe == name {
            println!("derivation {platform}: {hash}");
        }
    }
    Ok(())
}

fn check(global: &GlobalSettings, online: bool) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let every: Vec<_> = project.recipes.recipes.keys().cloned().collect();
    Graph::resolve(&project.recipes, &RecipeSelection::All).map_err(Failure::input)?;
    // Disabled recipes too: a cycle among them is still a cycle.
    let all = RecipeSelection::Only(every.clone());
    if let Err(e) = Graph::resolve(&project.recipes, &all)
        && !matches!(e, crate::graph::Error::Disabled(_))
    {
        return Err(Failure::input(e));
    }
    if online {
        check_tags(global, &project)?;
    }
    if !global.quiet {
        eprintln!(
            "azb: {} recipes and {} are valid",
            every.len(),
            project.image_file.name
        );
    }
    Ok(())
}

fn add(global: &GlobalSettings, args: &RecipeAddArgs) -> Result<(), Failure> {
    let name: RecipeName = args
        .name
        .parse()
        .map_err(|e| Failure::plain(FailureKind::Input, e))?;
    let project = settings::load_project(global)?;
    let recipes_dir = project.root.join("recipes");
    let path = recipes_dir.join(format!("{name}.ron"));
    if project.recipes.get(name.as_str()).is_some() || path.exists() {
        return Err(Failure::input(miette::miette!(
            help = format!("`azb recipe bump {name} <commit>` re-pins it"),
            "recipe `{name}` already exists ({})",
            path.display()
        )));
    }
    // Derivation hashes need the toolchains; without them the recipe is still written and
    // only the listing is skipped, saying why.
    let listing = |project: &Project| {
        hashes(project).map_err(|failure| {
            let why = failure.report.map(|r| r.to_string()).unwrap_or_default();
            format!("azb: no derivations listed: the plan failed: {why}")
        })
    };
    let before = listing(&project);
    let store = global.store()?;
    let fetcher = global.fetcher(&store)?;
    let (commit, tag) = fetcher
        .resolve(&args.git, &args.commit)
        .map_err(fetch_failure)?;
    let tree = export_tree(&fetcher, &store, &args.git, commit)?;
    let detected = crate::recipe::detect(&name, tree.path()).map_err(|e| match e {
        crate::recipe::ScaffoldError::UnknownKind { .. } => Failure::input(miette::miette!(
            help = "write the recipe by hand with `build: Script(script: \"...\")`",
            "{e}"
        )),
        crate::recipe::ScaffoldError::Fs(e) => Failure::environment(e),
    })?;
    let text = crate::recipe::render(
        &name,
        &args.git,
        commit,
        tag.as_deref(),
        &args.category,
        &detected,
    );
    crate::fs::write_atomic(&recipes_dir, &path, text.as_bytes()).map_err(Failure::environment)?;
    let after = match settings::load_project(global) {
        Ok(project) => match &before {
            Ok(_) => listing(&project),
            Err(why) => Err(why.clone()),
        },
        Err(failure) => {
            // Never leave a recipe behind that breaks the set.
            crate::fs::err::remove_file(&path)
                .map_err(|e| Failure::environment(crate::fs::FsError::new("remove", &path, e)))?;
            return Err(failure);
        }
    };
    eprintln!(
        "azb: wrote recipes/{name}.ron: {} built with {}, pinned to {commit}{}{}",
        detected.kind.as_str(),
        detected.build.kind_name(),
        tag.as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        detected
            .license
            .as_deref()
            .map(|l| format!(", licence {l}"))
            .unwrap_or_default()
    );
    let (before, after) = match (before, after) {
        (Ok(before), Ok(after)) => (before, after),
        (Err(why), _) | (_, Err(why)) => {
            eprintln!("{why}");
            return Ok(());
        }
    };
    for (key, hash) in &after {
        if !before.contains_key(key) {
            println!("build {} {} {}", key.1, key.0, &hash[..12]);
        }
    }
    Ok(())
}

/// A fetch error as a failure: what the repository lacks is the user's input.
fn fetch_failure(e: crate::fetch::Error) -> Failure {
    let kind = match e {
        crate::fetch::Error::CommitMissing { .. } | crate::fetch::Error::RevisionMissing { .. } => {
            FailureKind::Input
        }
        _ => FailureKind::Environment,
    };
    Failure::diagnostic(kind, e)
}

/// The tree of `url` at `commit`, exported into a temporary directory in the store's tmp/.
fn export_tree(
    fetcher: &Fetcher,
    store: &crate::store::Store,
    url: &str,
    commit: crate::recipe::CommitSha,
) -> Result<tempfile::TempDir, Failure> {
    let tree = tempfile::Builder::new()
        .prefix("recipe-tree-")
        .tempdir_in(store.layout().tmp())
        .map_err(|e| {
            Failure::environment(crate::fs::FsError::new(
                "create a temp dir in",
                store.layout().tmp(),
                e,
            ))
        })?;
    fetcher
        .export(url, commit, tree.path())
        .map_err(Failure::environment)?;
    Ok(tree)
}

fn bump(global: &GlobalSettings, name: &str, rev: &str) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let Some(loaded) = project.recipes.get(name) else {
        return Err(Failure::input(miette::miette!(
            help = "`azb recipe list` shows the names",
            "no recipe `{name}`"
        )));
    };
    if loaded.recipe.commit().is_none() {
        return Err(Failure::input(miette::miette!(
            "`{name}` is a builtin: it has no pin to bump"
        )));
    }
    let before = hashes(&project)?;
    let store = global.store()?;
    let fetcher = global.fetcher(&store)?;
    let (commit, tag) = fetcher
        .resolve(loaded.recipe.url(), rev)
        .map_err(fetch_failure)?;
    // The version the new tree declares (as `recipe add` reads it), so version-info and
    // the SBOM name the right one.
    let tree = export_tree(&fetcher, &store, loaded.recipe.url(), commit)?;
    let top = match &loaded.recipe.subdir {
        Some(subdir) => tree.path().join(subdir),
        None => tree.path().to_owned(),
    };
    let declared = crate::recipe::detect(&loaded.recipe.name, &top)
        .ok()
        .and_then(|d| d.version);
    let old_version = loaded.recipe.version.as_str();
    let mut file = loaded.file.clone();
    let mut new_version = None;
    match declared {
        Some(version) if version != old_version => {
            match set_version(&loaded.file, old_version, &version) {
                Some(text) => {
                    file = SourceFile::new(std::path::Path::new(&loaded.file.name), text);
                    new_version = Some(version);
                }
                None => eprintln!(
                    "warning: {name}: the tree declares version {version}, but recipes/{name}.ron has no `version: \"{old_version}\"` to change; set it by hand"
                ),
            }
        }
        Some(_) => {}
        None => eprintln!(
            "warning: {name}: azb cannot read the version the tree at {commit} declares; check `version` in recipes/{name}.ron (now \"{old_version}\")"
        ),
    }
    let text = set_pin(&file, commit, tag.as_deref())
        .map_err(|e| Failure::plain(FailureKind::Input, e))?;
    let path = project.root.join("recipes").join(format!("{name}.ron"));
    let recipes_dir = project.root.join("recipes");
    let original = loaded.file.text.to_string();
    crate::fs::write_atomic(&recipes_dir, &path, text.as_bytes()).map_err(Failure::environment)?;
    let after = match settings::load_project(global) {
        Ok(project) => hashes(&project),
        Err(e) => Err(e),
    };
    let after = match after {
        Ok(after) => after,
        Err(failure) => {
            // Never leave a broken recipe behind.
            crate::fs::write_atomic(&recipes_dir, &path, original.as_bytes())
                .map_err(Failure::environment)?;
            return Err(failure);
        }
    };
    eprintln!(
        "azb: {name} pinned to {commit}{}{}",
        tag.map(|t| format!(" ({t})")).unwrap_or_default(),
        new_version
            .map(|v| format!(", version {old_version} -> {v}"))
            .unwrap_or_default()
    );
    for (key, hash) in &after {
        if before.get(key) != Some(hash) {
            println!("rebuild {} {} {}", key.1, key.0, &hash[..12]);
        }
    }
    Ok(())
}

/// Every tag label must still name its pinned commit; a moved tag is reported, never
/// followed.
fn check_tags(global: &GlobalSettings, project: &Project) -> Result<(), Failure> {
    let fetcher = global.fetcher(&global.store()?)?;
    let mut problems = Vec::new();
    for loaded in project.recipes.recipes.values() {
        let recipe = &loaded.recipe;
        let (Some(commit), Some(tag)) = (recipe.commit(), recipe.tag()) else {
            continue;
        };
        match fetcher
            .tag_state(recipe.url(), tag, commit)
            .map_err(Failure::environment)?
        {
            TagState::Pins => {}
            TagState::Moved(target) => problems.push(format!(
                "{}: tag `{tag}` of {} now points at {target}, but the pin is {commit} \
                 (a moved tag is not followed; review it, then `azb recipe bump {} {tag}`)",
                loaded.file.name,
                recipe.url(),
                recipe.name
            )),
            TagState::Gone => problems.push(format!(
                "{}: tag `{tag}` is gone from {}",
                loaded.file.name,
                recipe.url()
            )),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Err(Failure {
        kind: FailureKind::Input,
        report: None,
    })
}

fn outdated(global: &GlobalSettings) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let fetcher = global.fetcher(&global.store()?)?;
    // An upstream that cannot be fetched is reported and the others still are looked at.
    let mut unreachable = 0;
    for loaded in project.recipes.recipes.values() {
        let recipe = &loaded.recipe;
        let Some(pinned) = recipe.tag() else {
            continue;
        };
        let tags = match fetcher.tags(recipe.url()) {
            Ok(tags) => tags,
            Err(e) => {
                eprintln!("error: {}: {e}", recipe.name);
                unreachable += 1;
                continue;
            }
        };
        let newer = newer_releases(pinned, tags.iter().map(|(name, _)| name.as_str()));
        if let Some(newest) = newer.last() {
            println!(
                "{} {pinned} -> {newest} (newer: {})",
                recipe.name,
                newer.join(", ")
            );
        }
    }
    if unreachable > 0 {
        return Err(Failure {
            kind: super::FailureKind::Environment,
            report: Some(miette::miette!(
                "{unreachable} upstream(s) could not be fetched (above); the others were checked"
            )),
        });
    }
    Ok(())
}
