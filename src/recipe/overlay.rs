//! Overlays (`overlays/*.ron`): ordered patches applied to the recipe set after loading and
//! before the rules are checked — enable/disable, re-pin, point a source at a mirror, add
//! build flags, add recipes. The image definition lists its overlays; `--overlay FILE`
//! adds more after them.

use serde::{Deserialize, Serialize};

use super::diagnostic::{RecipeDiagnostic, SourceFile};
use super::load::{LoadedRecipe, RecipeSet};
use super::{Build, CommitSha, Recipe, RecipeName, Source};

/// An overlay file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "Overlay")]
pub struct Overlay {
    /// For people.
    #[serde(default)]
    pub description: String,
    /// Applied in order.
    pub patches: Vec<Patch>,
}

/// One change to the recipe set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Patch {
    /// Enable these recipes.
    Enable(Vec<RecipeName>),
    /// Disable these recipes.
    Disable(Vec<RecipeName>),
    /// Enable exactly these recipes and disable every other one.
    EnableOnly(Vec<RecipeName>),
    /// Pin a recipe to another commit (and tag label).
    Repin {
        /// The recipe.
        name: RecipeName,
        /// The new pin.
        commit: CommitSha,
        /// The new label.
        #[serde(default)]
        tag: Option<String>,
    },
    /// Fetch a recipe's source from another URL (the same commit; no hash changes).
    Mirror {
        /// The recipe.
        name: RecipeName,
        /// Where to fetch from.
        url: String,
    },
    /// Append flags to a recipe's build kind.
    AddFlags {
        /// The recipe.
        name: RecipeName,
        /// Appended in order.
        flags: Vec<String>,
    },
    /// Add a recipe that recipes/ does not have.
    Add(Box<Recipe>),
}

/// Applies `overlay` (read from `file`) to `set`; returns what could not be applied.
pub fn apply(set: &mut RecipeSet, overlay: &Overlay, file: &SourceFile) -> Vec<RecipeDiagnostic> {
    let mut problems = Vec::new();
    let unknown = |field: &str, name: &RecipeName| {
        file.diagnostic(
            file.item_span(field, name.as_str()),
            format!("the overlay names recipe `{name}`, which does not exist"),
            "no such recipe",
            Some(format!(
                "add recipes/{name}.ron, add it with `Add(Recipe(...))` first, or drop it"
            )),
        )
    };
    for patch in &overlay.patches {
        match patch {
            Patch::Enable(names) | Patch::Disable(names) => {
                let (field, enabled) = if matches!(patch, Patch::Enable(_)) {
                    ("Enable", true)
                } else {
                    ("Disable", false)
                };
                for name in names {
                    match set.recipes.get_mut(name.as_str()) {
                        Some(loaded) => loaded.recipe.enabled = enabled,
                        None => problems.push(unknown(field, name)),
                    }
                }
            }
            Patch::EnableOnly(names) => {
                for name in names.iter().filter(|n| set.get(n.as_str()).is_none()) {
                    problems.push(unknown("EnableOnly", name));
                }
                for (name, loaded) in set.recipes.iter_mut() {
                    loaded.recipe.enabled = names.contains(name);
                }
            }
            Patch::Repin { name, commit, tag } => match set.recipes.get_mut(name.as_str()) {
                Some(LoadedRecipe {
                    recipe:
                        Recipe {
                            source:
                                Source::Git {
                                    commit: c, tag: t, ..
                                },
                            ..
                        },
                    ..
                }) => {
                    *c = *commit;
                    *t = tag.clone();
                }
                Some(_) => problems.push(not_git(file, "Repin", name)),
                None => problems.push(unknown("Repin", name)),
            },
            Patch::Mirror { name, url } => match set.recipes.get_mut(name.as_str()) {
                Some(LoadedRecipe {
                    recipe:
                        Recipe {
                            source: Source::Git { url: u, .. },
                            ..
                        },
                    ..
                }) => *u = url.clone(),
                Some(_) => problems.push(not_git(file, "Mirror", name)),
                None => problems.push(unknown("Mirror", name)),
            },
            Patch::AddFlags { name, flags } => match set
                .recipes
                .get_mut(name.as_str())
                .map(|l| &mut l.recipe.build)
            {
                Some(
                    Build::Pgxs { flags: f }
                    | Build::Make { flags: f }
                    | Build::Cmake { flags: f }
                    | Build::Meson { flags: f }
                    | Build::Autotools { flags: f },
                ) => f.extend(flags.iter().cloned()),
                Some(other) => problems.push(file.diagnostic(
                    file.item_span("AddFlags", name.as_str()),
                    format!(
                        "`{name}` builds with `{}`, which takes no flags",
                        other.kind_name()
                    ),
                    "no flags",
                    Some("flags apply to pgxs, make, cmake, meson and autotools recipes".into()),
                )),
                None => problems.push(unknown("AddFlags", name)),
            },
            Patch::Add(recipe) => {
                if set.get(recipe.name.as_str()).is_some() {
                    problems.push(file.diagnostic(
                        file.item_span("name", recipe.name.as_str()),
                        format!("the overlay adds `{}`, which recipes/ already has", recipe.name),
                        "already exists",
                        Some("use Repin, Mirror, AddFlags or Enable to change an existing recipe".into()),
                    ));
                } else {
                    set.recipes.insert(
                        recipe.name.clone(),
                        LoadedRecipe {
                            recipe: (**recipe).clone(),
                            file: file.clone(),
                        },
                    );
                }
            }
        }
    }
    problems
}

fn not_git(file: &SourceFile, field: &str, name: &RecipeName) -> RecipeDiagnostic {
    file.diagnostic(
        file.item_span(field, name.as_str()),
        format!("`{name}` is a builtin: it has no source to change"),
        "builtin",
        None,
    )
}
