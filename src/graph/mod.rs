//! The resolved recipe set of one image: which recipes go in (enabled ones, or the image's
//! selection and everything it depends on) in dependency order, with cycles rejected.
//!
//! Owns ordering and reachability. Never hashes, fetches or builds; recipe rules that need
//! no graph (unknown or disabled dependencies) belong to `recipe`.

use std::collections::{BTreeMap, BTreeSet};

use crate::recipe::{self, LoadedRecipe, RecipeName, RecipeSelection, RecipeSet};

/// What can go wrong resolving the graph.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// Recipes depend on each other in a circle.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cycle(Box<recipe::RecipeDiagnostic>),
    /// The image selects a disabled recipe.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Disabled(Box<recipe::RecipeDiagnostic>),
}

/// The recipes of one image in dependency order: every recipe after its dependencies.
#[derive(Debug, Clone)]
pub struct Graph<'a> {
    /// Recipes, dependencies first; ties broken by name.
    pub order: Vec<&'a LoadedRecipe>,
}

impl<'a> Graph<'a> {
    /// Resolves the recipes `selection` picks from `set`.
    pub fn resolve(set: &'a RecipeSet, selection: &RecipeSelection) -> Result<Self, Error> {
        let roots: Vec<&'a RecipeName> = match selection {
            RecipeSelection::All => set
                .recipes
                .values()
                .filter(|r| r.recipe.enabled)
                .map(|r| &r.recipe.name)
                .collect(),
            RecipeSelection::Only(names) => names
                .iter()
                .filter_map(|n| set.recipes.get_key_value(n.as_str()).map(|(k, _)| k))
                .collect(),
        };
        for name in &roots {
            let loaded = &set.recipes[name.as_str()];
            if !loaded.recipe.enabled {
                return Err(Error::Disabled(Box::new(loaded.file.diagnostic(
                    loaded.file.field_span("enabled"),
                    format!("the image selects `{name}`, which is disabled"),
                    "disabled here",
                    Some(format!(
                        "set enabled: true in recipes/{name}.ron or drop it from the image"
                    )),
                ))));
            }
        }
        let mut order = Vec::new();
        let mut state: BTreeMap<&RecipeName, Mark> = BTreeMap::new();
        for root in roots {
            visit(set, root, &mut state, &mut Vec::new(), &mut order)?;
        }
        Ok(Self { order })
    }

    /// Names of the recipes in order.
    pub fn names(&self) -> impl Iterator<Item = &RecipeName> {
        self.order.iter().map(|r| &r.recipe.name)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    InProgress,
    Done,
}

/// Depth-first post-order; a node met again while in progress closes a cycle.
fn visit<'a>(
    set: &'a RecipeSet,
    name: &'a RecipeName,
    state: &mut BTreeMap<&'a RecipeName, Mark>,
    path: &mut Vec<&'a RecipeName>,
    order: &mut Vec<&'a LoadedRecipe>,
) -> Result<(), Error> {
    match state.get(name) {
        Some(Mark::Done) => return Ok(()),
        Some(Mark::InProgress) => {
            let start = path.iter().position(|n| *n == name).unwrap_or(0);
            let cycle: Vec<String> = path[start..]
                .iter()
                .chain([&name])
                .map(|n| n.to_string())
                .collect();
            // Report at the dependency edge that closes the circle.
            let closing = &set.recipes[path[path.len() - 1].as_str()];
            return Err(Error::Cycle(Box::new(closing.file.diagnostic(
                closing.file.item_span("depends", name.as_str()),
                format!("dependency cycle: {}", cycle.join(" -> ")),
                "closes the cycle",
                Some("a recipe cannot need itself, even through others; remove one of these depends".into()),
            ))));
        }
        None => {}
    }
    let loaded = &set.recipes[name.as_str()];
    state.insert(name, Mark::InProgress);
    path.push(name);
    let deps: BTreeSet<&RecipeName> = loaded.recipe.depends.iter().collect();
    for dep in deps {
        visit(set, dep, state, path, order)?;
    }
    path.pop();
    state.insert(name, Mark::Done);
    order.push(loaded);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, name: &str, depends: &[&str]) {
        let deps: Vec<String> = depends.iter().map(|d| format!("\"{d}\"")).collect();
        let text = format!(
            "Recipe(name: \"{name}\", kind: Extension, source: Git(url: \"file:///x\", commit: \"{}\"),\n build: Pgxs(), depends: [{}])\n",
            "a".repeat(40),
            deps.join(", ")
        );
        fs_err::write(dir.join(format!("{name}.ron")), text).unwrap();
    }

    #[test]
    fn order_puts_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "c", &["b"]);
        write(dir.path(), "b", &["a"]);
        write(dir.path(), "a", &[]);
        write(dir.path(), "z", &[]);
        let set = recipe::load_recipes(dir.path()).unwrap();
        let graph = Graph::resolve(&set, &RecipeSelection::All).unwrap();
        let names: Vec<&str> = graph.names().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "z"]);
        let only =
            Graph::resolve(&set, &RecipeSelection::Only(vec!["b".parse().unwrap()])).unwrap();
        assert_eq!(
            only.names().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn cycle_is_reported_with_its_path_and_place() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", &["b"]);
        write(dir.path(), "b", &["c"]);
        write(dir.path(), "c", &["a"]);
        let set = recipe::load_recipes(dir.path()).unwrap();
        let err = Graph::resolve(&set, &RecipeSelection::All).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("dependency cycle: a -> b -> c -> a"),
            "{text}"
        );
        assert!(text.contains("c.ron:2:"), "{text}");
    }
}
