//! Reading a project: every `recipes/*.ron` and one image definition, parsed and checked
//! against the rules, all problems reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::diagnostic::{RecipeDiagnostic, SourceFile, from_ron};
use super::{Build, Error, ImageDef, Recipe, RecipeKind, RecipeName, Source};
use crate::fs::{FsError, err, sorted_entries};

/// A recipe with the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    /// The parsed recipe.
    pub recipe: Recipe,
    /// Its file, for diagnostics.
    pub file: SourceFile,
}

/// Every recipe of a project, by name.
#[derive(Debug, Clone, Default)]
pub struct RecipeSet {
    /// Recipes by name (sorted).
    pub recipes: BTreeMap<RecipeName, LoadedRecipe>,
}

impl RecipeSet {
    /// The recipe called `name`.
    pub fn get(&self, name: &str) -> Option<&LoadedRecipe> {
        self.recipes.get(name)
    }
}

/// A project: its root, image definition and recipes.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory holding recipes/ and stacks/.
    pub root: PathBuf,
    /// The image definition.
    pub image: ImageDef,
    /// Its file.
    pub image_file: SourceFile,
    /// The recipes.
    pub recipes: RecipeSet,
    /// The package lock (`builders.lock`), when the project has one.
    pub lock: Option<super::Lock>,
}

impl Project {
    /// Loads the recipes under `root/recipes` and the image definition at `image_path`,
    /// applies the image's overlays and then `extra_overlays`, and checks the rules.
    pub fn load(root: &Path, image_path: &Path, extra_overlays: &[PathBuf]) -> Result<Self, Error> {
        let (mut recipes, mut problems) = read_recipes(&root.join("recipes"))?;
        let image_file = read_source(
            image_path,
            image_path.strip_prefix(root).unwrap_or(image_path),
        )?;
        let image: ImageDef = parse(&image_file, "image definition fields").map_err(Error::One)?;
        let overlay_paths = image
            .overlays
            .iter()
            .map(|p| root.join(p))
            .chain(extra_overlays.iter().cloned());
        for path in overlay_paths {
            let file = read_source(&path, path.strip_prefix(root).unwrap_or(&path))?;
            match parse::<super::Overlay>(&file, "overlay fields") {
                Ok(overlay) => {
                    problems.extend(super::overlay::apply(&mut recipes, &overlay, &file))
                }
                Err(diagnostic) => problems.push(*diagnostic),
            }
        }
        problems.extend(check_rules(&recipes));
        if let super::RecipeSelection::Only(names) = &image.recipes {
            for name in names.iter().filter(|n| recipes.get(n.as_str()).is_none()) {
                problems.push(image_file.diagnostic(
                    image_file.item_span("Only", name.as_str()),
                    format!("the image lists recipe `{name}`, which does not exist"),
                    "no such recipe",
                    Some(format!("add recipes/{name}.ron or remove it from the list")),
                ));
            }
        }
        if image.platforms.is_empty() {
            problems.push(image_file.diagnostic(
                image_file.field_span("platforms"),
                "the image has no platforms",
                "empty",
                Some(
                    "add \"linux/amd64\" and/or \"linux/arm64\" with a base and a toolchain".into(),
                ),
            ));
        }
        for platform in image.platforms.values() {
            if let super::BaseImage::Registry { reference } = &platform.base
                && let Err(why) = super::BaseImage::pinned(reference)
            {
                let quoted = format!("\"{reference}\"");
                let span = image_file
                    .text
                    .find(&quoted)
                    .map_or_else(|| image_file.field_span("base"), |at| at..at + quoted.len());
                problems.push(image_file.diagnostic(
                    span,
                    format!("the base image `{reference}` is not pinned"),
                    "not pinned by digest",
                    Some(why.to_owned()),
                ));
            }
        }
        if let Some(companion) = &image.companion {
            problems.extend(check_companion(&image, companion, &image_file, root));
        }
        let lock_path = root.join(super::LOCK_FILE);
        let mut lock = None;
        if lock_path.is_file() {
            let file = read_source(&lock_path, Path::new(super::LOCK_FILE))?;
            match parse::<super::Lock>(&file, "lock fields") {
                Ok(parsed) => lock = Some(parsed),
                Err(diagnostic) => problems.push(*diagnostic),
            }
        }
        if !problems.is_empty() {
            return Err(problems.into());
        }
        Ok(Self {
            root: root.to_owned(),
            image,
            image_file,
            recipes,
            lock,
        })
    }

    /// The Debian packages of every companion image defined under `stacks/` (the lock
    /// covers them all, whichever image definition a command was given).
    pub fn companion_packages(&self) -> Result<BTreeSet<String>, Error> {
        Ok(self
            .image_definitions()?
            .into_iter()
            .flat_map(|(_, image)| image.companion.into_iter().flat_map(|c| c.packages))
            .collect())
    }

    /// Every image definition under `stacks/` (`*.ron`), with its file, by file name.
    fn image_definitions(&self) -> Result<Vec<(PathBuf, ImageDef)>, Error> {
        let dir = self.root.join("stacks");
        let mut found = Vec::new();
        if !dir.is_dir() {
            return Ok(found);
        }
        for entry in sorted_entries(&dir)? {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "ron") || !path.is_file() {
                continue;
            }
            let file = read_source(&path, path.strip_prefix(&self.root).unwrap_or(&path))?;
            let image: ImageDef = parse(&file, "image definition fields").map_err(Error::One)?;
            found.push((path, image));
        }
        Ok(found)
    }

    /// The images the Compose stack `stacks/<stack>/compose.yml` runs: each `image:` of
    /// the file (the default of a `${VAR:-default}`) whose repository is the name of this
    /// project's image definition (at `image_path`) or of one under `stacks/`. Images no
    /// definition makes are listed apart.
    pub fn stack_images(&self, image_path: &Path, stack: &str) -> Result<StackImages, Error> {
        let compose = self.root.join("stacks").join(stack).join("compose.yml");
        let valid = !stack.is_empty() && !stack.contains(['/', '\\']) && stack != "..";
        if !valid || !compose.is_file() {
            let mut available = Vec::new();
            for entry in sorted_entries(&self.root.join("stacks"))? {
                if entry.path().join("compose.yml").is_file() {
                    available.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            return Err(Error::NoStack {
                stack: stack.to_owned(),
                available: available.join(", "),
            });
        }
        let text = err::read_to_string(&compose).map_err(|e| FsError::new("read", &compose, e))?;
        let mut definitions = vec![(image_path.to_owned(), self.image.name.clone())];
        definitions.extend(
            self.image_definitions()?
                .into_iter()
                .map(|(path, image)| (path, image.name)),
        );
        let mut images = StackImages::default();
        for reference in compose_images(&text) {
            let repository = reference
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map_or(reference.as_str(), |(repository, _)| repository);
            match definitions.iter().find(|(_, name)| name == repository) {
                Some((path, name)) => {
                    if !images.made.iter().any(|(_, n)| n == name) {
                        images.made.push((path.clone(), name.clone()));
                    }
                }
                None => images.elsewhere.push(reference),
            }
        }
        Ok(images)
    }

    /// A path from the image definition, resolved against the project root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

/// What a Compose stack runs (see [`Project::stack_images`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackImages {
    /// The image definitions that make its images, with their names, in the file's order.
    pub made: Vec<(PathBuf, String)>,
    /// Images it names that no definition of the project makes.
    pub elsewhere: Vec<String>,
}

/// The images a Compose file names: each `image:` value, the default of a
/// `${VAR:-default}` (or `${VAR-default}`) when it is one.
fn compose_images(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("image:"))
        .map(|value| {
            let value = value.trim().trim_matches(['"', '\'']);
            match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(inner) => inner
                    .split_once(":-")
                    .or_else(|| inner.split_once('-'))
                    .map_or("", |(_, default)| default)
                    .to_owned(),
                None => value.to_owned(),
            }
        })
        .filter(|value| !value.is_empty())
        .collect()
}

/// Reads `path`, naming it `shown` in diagnostics.
fn read_source(path: &Path, shown: &Path) -> Result<SourceFile, FsError> {
    let text = err::read_to_string(path).map_err(|e| FsError::new("read", path, e))?;
    Ok(SourceFile::new(shown, text))
}

fn parse<T: DeserializeOwned>(file: &SourceFile, what: &str) -> Result<T, Box<RecipeDiagnostic>> {
    ron::Options::default()
        .from_str(&file.text)
        .map_err(|e| Box::new(from_ron(file, &e, what)))
}

/// Loads and checks every `*.ron` in `dir`; all problems come back at once.
pub fn load_recipes(dir: &Path) -> Result<RecipeSet, Error> {
    let (set, mut problems) = read_recipes(dir)?;
    problems.extend(check_rules(&set));
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems.into())
    }
}

/// What is wrong with a companion image's definition.
fn check_companion(
    image: &ImageDef,
    companion: &super::Companion,
    file: &SourceFile,
    root: &Path,
) -> Vec<RecipeDiagnostic> {
    let mut problems = Vec::new();
    if image.recipes != super::RecipeSelection::Only(Vec::new()) {
        let span = match file.field_span("recipes") {
            none if none.is_empty() => file.field_span("companion"),
            span => span,
        };
        problems.push(file.diagnostic(
            span,
            "a companion image carries no extensions",
            "companion image",
            Some("write `recipes: Only([])`".into()),
        ));
    }
    if !companion.packages.contains(&companion.version_from) {
        problems.push(file.diagnostic(
            file.item_span("version_from", &companion.version_from),
            format!(
                "`version_from` names `{}`, which is not one of the image's packages",
                companion.version_from
            ),
            "not in `packages`",
            Some("name the package whose version the image's tag should carry".into()),
        ));
    }
    for (path, source) in &companion.files {
        if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
            problems.push(file.diagnostic(
                file.item_span("files", path),
                format!("`{path}` is not an absolute path in the image"),
                "not absolute",
                Some("write image paths as /etc/...".into()),
            ));
        }
        if !root.join(source).is_file() {
            problems.push(file.diagnostic(
                file.item_span("files", source),
                format!("`{source}` is not a file of the project"),
                "no such file",
                Some("paths are relative to the project root".into()),
            ));
        }
    }
    problems
}

/// Parses every `*.ron` in `dir`: the recipes that parsed, and the problems of the rest.
fn read_recipes(dir: &Path) -> Result<(RecipeSet, Vec<RecipeDiagnostic>), Error> {
    if !dir.is_dir() {
        return Err(Error::NoRecipes {
            path: dir.to_owned(),
        });
    }
    let mut problems = Vec::new();
    let mut set = RecipeSet::default();
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        // Shown as `recipes/<file>`: the same on every machine.
        let shown = Path::new("recipes").join(entry.file_name());
        let file = read_source(&path, &shown)?;
        match parse::<Recipe>(&file, "recipe fields") {
            Ok(recipe) => {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                if recipe.name.as_str() != stem {
                    problems.push(file.diagnostic(
                        file.field_span("name"),
                        format!(
                            "recipe name `{}` differs from its file name `{stem}.ron`",
                            recipe.name
                        ),
                        "must equal the file stem",
                        Some(format!(
                            "rename the file to {}.ron or set name: \"{stem}\"",
                            recipe.name
                        )),
                    ));
                    continue;
                }
                set.recipes
                    .insert(recipe.name.clone(), LoadedRecipe { recipe, file });
            }
            Err(diagnostic) => problems.push(*diagnostic),
        }
    }
    Ok((set, problems))
}

/// The rules between recipes: dependencies exist and are enabled, nothing depends on
/// itself, builtins have no source or build and everything else has both, runtime flags
/// fit the kind, licences are SPDX expressions. (Cycles are found by the graph.)
fn check_rules(set: &RecipeSet) -> Vec<RecipeDiagnostic> {
    let mut problems = Vec::new();
    for loaded in set.recipes.values() {
        let (recipe, file) = (&loaded.recipe, &loaded.file);
        for dep in &recipe.depends {
            let span = file.item_span("depends", dep.as_str());
            match set.get(dep.as_str()) {
                None => problems.push(file.diagnostic(
                    span,
                    format!("`{}` depends on `{dep}`, which has no recipe", recipe.name),
                    "unknown recipe",
                    Some(format!(
                        "add recipes/{dep}.ron or remove `{dep}` from depends"
                    )),
                )),
                Some(_) if dep == &recipe.name => problems.push(file.diagnostic(
                    span,
                    format!("`{}` depends on itself", recipe.name),
                    "self-dependency",
                    Some("remove it from depends".into()),
                )),
                Some(target) if recipe.enabled && !target.recipe.enabled => {
                    problems.push(file.diagnostic(
                        span,
                        format!(
                            "`{}` is enabled but depends on `{dep}`, which is disabled",
                            recipe.name
                        ),
                        "disabled dependency",
                        Some(format!("enable `{dep}` or disable `{}` too", recipe.name)),
                    ))
                }
                Some(_) => {}
            }
        }
        let builtin_source = matches!(recipe.source, Source::Builtin);
        let builds_nothing = matches!(recipe.build, Build::Builtin);
        if recipe.kind == RecipeKind::Builtin && !(builtin_source && builds_nothing) {
            problems.push(file.diagnostic(
                file.field_span("kind"),
                format!("`{}` is a builtin but has a source or a build", recipe.name),
                "builtin",
                Some("builtins ship with PostgreSQL: remove `source` and `build`".into()),
            ));
        }
        problems.extend(check_runtime(loaded));
        if let Build::CargoPgrx { pgrx, .. } = &recipe.build
            && !is_version(pgrx)
        {
            problems.push(file.diagnostic(
                file.item_span("build", pgrx),
                format!("`{}` pins cargo-pgrx `{pgrx}`, which is not a version", recipe.name),
                "cargo-pgrx version",
                Some("write the version of the pgrx crate the source's Cargo.lock pins, e.g. \"0.16.1\"".into()),
            ));
        }
        if matches!(recipe.build, Build::CargoPgrx { .. }) && recipe.emulate_arm64 {
            problems.push(file.diagnostic(
                file.field_span("emulate_arm64"),
                format!(
                    "`{}` builds with cargo-pgrx, which cross-compiles arm64; it has no emulated builder",
                    recipe.name
                ),
                "emulate_arm64",
                Some("remove `emulate_arm64: true`".into()),
            ));
        }
        if let Some(license) = &recipe.license
            && !super::is_license_expression(license)
        {
            problems.push(file.diagnostic(
                file.field_span("license"),
                format!("`{license}` is not an SPDX licence expression"),
                "licence",
                Some("write SPDX ids joined by AND / OR, e.g. \"PostgreSQL\" or \"MIT OR Apache-2.0\"".into()),
            ));
        }
        if let Some(subdir) = &recipe.subdir
            && !is_relative_subdir(subdir)
        {
            problems.push(file.diagnostic(
                file.field_span("subdir"),
                format!(
                    "`{}` builds in `{subdir}`, which is not a directory inside its source",
                    recipe.name
                ),
                "subdir",
                Some("write a relative path without `..`, e.g. Some(\"contrib/ext\")".into()),
            ));
        }
        if recipe.kind != RecipeKind::Builtin && (builtin_source || builds_nothing) {
            problems.push(file.diagnostic(
                file.field_span("kind"),
                format!("`{}` needs a git source and a build kind", recipe.name),
                "not a builtin",
                Some("add `source: Git(url: …, commit: …)` and `build: Pgxs()` (or another kind)".into()),
            ));
        }
    }
    problems
}

/// DESIGN.md: preload entries must be buildable as libraries, so a recipe that builds only
/// SQL files cannot be in shared_preload_libraries. (Tools may be libraries: wal2json and
/// safeupdate are modules without CREATE EXTENSION.)
fn check_runtime(loaded: &LoadedRecipe) -> Option<RecipeDiagnostic> {
    let (recipe, file) = (&loaded.recipe, &loaded.file);
    (recipe.runtime.preload && matches!(recipe.build, Build::Sql)).then(|| {
        file.diagnostic(
            file.field_span("runtime"),
            format!(
                "`{}` is marked for shared_preload_libraries but builds only SQL files",
                recipe.name
            ),
            "preload",
            Some(
                "a preloaded module must build a shared library: use Pgxs (or another compiling kind), or set preload to false"
                    .into(),
            ),
        )
    })
}

/// A `subdir` stays inside the source tree: relative, not empty, no `..` or `.` parts, no
/// empty parts, and no backslash or NUL (which other tools read differently).
pub fn is_relative_subdir(subdir: &str) -> bool {
    !subdir.is_empty()
        && !subdir.starts_with('/')
        && !subdir.contains(['\\', '\0'])
        && subdir
            .trim_end_matches('/')
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// A release version as the crate registry spells it: `MAJOR.MINOR.PATCH`, optionally with a
/// `-pre` or `+build` suffix of letters, digits, `.` and `-`.
pub fn is_version(text: &str) -> bool {
    let (core, suffix) = match text.find(['-', '+']) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, "x"),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && !suffix.is_empty()
        && suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+')
}

#[cfg(test)]
mod tests {
    use super::{compose_images, is_relative_subdir, is_version};

    #[test]
    fn a_compose_file_names_its_images_through_the_variable_defaults() {
        let text = "services:\n  a:\n    image: ${AZB_IMAGE:-azb/postgres:18}\n  b:\n    image: \"plain/one:2\"\n  c:\n    image: ${NO_DEFAULT}\n  d:\n    image: ${DASH-x/y}\n";
        assert_eq!(
            compose_images(text),
            ["azb/postgres:18", "plain/one:2", "x/y"]
        );
    }

    #[test]
    fn a_subdir_stays_inside_the_source() {
        for good in ["ext", "contrib/ext", "a/b/", "my.ext", "..x"] {
            assert!(is_relative_subdir(good), "{good}");
        }
        for bad in [
            "", "/etc", "../../..", "a/../b", "a//b", "./a", "a/.", "..", "a\\b",
        ] {
            assert!(!is_relative_subdir(bad), "{bad}");
        }
    }

    #[test]
    fn tool_versions_are_plain_semver() {
        for good in ["0.16.1", "1.0.0-rc.1", "0.12.0+build5"] {
            assert!(is_version(good), "{good}");
        }
        for bad in [
            "../0.16.1",
            "0.16",
            "=0.16.1",
            "0.16.1-",
            "v0.16.1",
            "0.16.1 ",
            "",
        ] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}
