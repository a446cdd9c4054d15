//! Derivations: the canonical description of one build (one recipe on one platform) and
//! its input-addressed [`DrvHash`]; the plan of an image; which input changed between two
//! derivations of the same recipe.
//!
//! Owns what goes into a hash and how it is encoded (flake-free-docs/derivations.md).
//! Never reads the store or runs anything: builder identities come in as values.

mod encode;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::recipe::{
    Build, CommitSha, ImageDef, LoadedRecipe, Lock, LockProblem, Platform, RecipeName,
};

pub use encode::PROTOCOL;

crate::digest::hash_newtype!(
    /// blake3 of a derivation's canonical encoding: the name of a build.
    DrvHash, 32, "derivation hash"
);

/// The identity of the builder a derivation builds in: the host toolchain's hash
/// (`host:...`), a builder image's (`docker:...`, `docker-emulated:...`), with
/// `+<rust identity>` for Rust builds. Never empty: a derivation always names what builds
/// it. Serialised as its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BuilderId(String);

impl BuilderId {
    /// `text` as an identity; `None` when it is empty.
    pub fn new(text: impl Into<String>) -> Option<Self> {
        let text = text.into();
        (!text.is_empty()).then_some(Self(text))
    }

    /// This builder running a Rust build with the compiler `rust`: `<self>+<rust>`.
    pub fn with_rust(&self, rust: &str) -> Self {
        Self(format!("{}+{rust}", self.0))
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BuilderId {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(text).ok_or("a builder identity is never empty")
    }
}

impl From<BuilderId> for String {
    fn from(id: BuilderId) -> Self {
        id.0
    }
}

impl std::fmt::Display for BuilderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that decides a build's output, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derivation {
    /// azb's build-protocol version.
    pub protocol: u32,
    /// The recipe.
    pub name: RecipeName,
    /// Target platform.
    pub platform: Platform,
    /// PostgreSQL major version built against.
    pub pg_major: u32,
    /// Pinned source commit.
    pub commit: CommitSha,
    /// Directory inside the source to build in.
    pub subdir: Option<String>,
    /// Build kind (`pgxs`, ...).
    pub build_kind: String,
    /// Build kind parameters (flags, features, ...), in order.
    pub build_flags: Vec<String>,
    /// Builder packages, sorted and unique.
    pub build_packages: Vec<String>,
    /// Identity of the builder (toolchain hash or builder image digest).
    pub builder: BuilderId,
    /// Dependencies' hashes.
    pub deps: BTreeMap<RecipeName, DrvHash>,
}

impl Derivation {
    /// A pgxs derivation of `name` for amd64 with no dependencies (for tests).
    #[cfg(test)]
    pub(crate) fn example(name: &str) -> Self {
        Self {
            protocol: PROTOCOL,
            name: name.parse().expect("a valid recipe name"),
            platform: Platform::Amd64,
            pg_major: 18,
            commit: "0123456789abcdef0123456789abcdef01234567"
                .parse()
                .expect("40 hex digits"),
            subdir: None,
            build_kind: "pgxs".into(),
            build_flags: vec![],
            build_packages: vec![],
            builder: BuilderId::new("test").expect("not empty"),
            deps: BTreeMap::new(),
        }
    }

    /// The derivation's hash: blake3 of its canonical encoding.
    pub fn hash(&self) -> DrvHash {
        DrvHash::from_bytes(*blake3::hash(&encode::canonical(self)).as_bytes())
    }

    /// Every input after the protocol version, in encoding order, by name: the one table
    /// the canonical encoding (hence the hash) and [`Derivation::changed_inputs`] both
    /// read, so an input cannot be hashed without being reported, or the reverse.
    pub(crate) fn inputs(&self) -> [(&'static str, Input<'_>); 10] {
        [
            ("name", Input::Text(self.name.as_str().into())),
            ("platform", Input::Text(self.platform.as_str().into())),
            ("pg_major", Input::Text(self.pg_major.to_string().into())),
            ("commit", Input::Text(self.commit.to_string().into())),
            ("subdir", Input::Optional(self.subdir.as_deref())),
            ("build_kind", Input::Text(self.build_kind.as_str().into())),
            ("build_flags", Input::List(&self.build_flags)),
            ("build_packages", Input::List(&self.build_packages)),
            ("builder", Input::Text(self.builder.as_str().into())),
            ("deps", Input::Deps(&self.deps)),
        ]
    }

    /// The inputs that differ from `old`, by name (`commit`, `deps.foo`, `builder`, ...).
    pub fn changed_inputs(&self, old: &Derivation) -> Vec<String> {
        let mut changed = Vec::new();
        if self.protocol != old.protocol {
            changed.push("protocol".to_owned());
        }
        for ((name, new), (_, was)) in self.inputs().into_iter().zip(old.inputs()) {
            match (new, was) {
                (Input::Deps(new), Input::Deps(was)) => {
                    let names: std::collections::BTreeSet<&RecipeName> =
                        new.keys().chain(was.keys()).collect();
                    changed.extend(
                        names
                            .into_iter()
                            .filter(|dep| new.get(*dep) != was.get(*dep))
                            .map(|dep| format!("deps.{dep}")),
                    );
                }
                (new, was) if new != was => changed.push(name.to_owned()),
                _ => {}
            }
        }
        changed
    }
}

/// The value of one derivation input (see [`Derivation::inputs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input<'a> {
    /// Text.
    Text(std::borrow::Cow<'a, str>),
    /// Text or nothing.
    Optional(Option<&'a str>),
    /// Texts in order.
    List(&'a [String]),
    /// The dependencies' hashes by name.
    Deps(&'a BTreeMap<RecipeName, DrvHash>),
}

/// Where a platform's builder identities come from.
#[derive(Debug, Clone)]
pub enum Builders<'l> {
    /// One identity for every recipe (the host executor's toolchain).
    Host(BuilderId),
    /// One builder per `build_packages` set, pinned by the package lock.
    Locked(&'l Lock),
}

impl Builders<'_> {
    /// The identity of the builder of a recipe with `build_packages` on `platform`
    /// (`emulated`: the recipe builds arm64 in an emulated builder, not a cross one).
    pub fn identity(
        &self,
        platform: Platform,
        build_packages: &[String],
        emulated: bool,
    ) -> Result<BuilderId, LockProblem> {
        match self {
            Builders::Host(identity) => Ok(identity.clone()),
            Builders::Locked(lock) => {
                let identity = lock.builder_identity(platform, build_packages, emulated)?;
                Ok(BuilderId::new(identity).expect("a lock's builder identity is a hash"))
            }
        }
    }
}

/// A recipe whose builder the lock does not know.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("no builder for `{name}`")]
pub struct NoBuilder {
    /// The recipe.
    pub name: RecipeName,
    /// What the lock lacks.
    #[source]
    pub problem: LockProblem,
}

/// One derivation of the plan with the recipe it comes from.
#[derive(Debug, Clone)]
pub struct Planned<'a> {
    /// The recipe.
    pub recipe: &'a LoadedRecipe,
    /// Its derivation.
    pub drv: Derivation,
    /// The derivation's hash.
    pub hash: DrvHash,
}

/// Every derivation of an image: per platform, in dependency order.
#[derive(Debug, Clone, Default)]
pub struct Plan<'a> {
    /// Derivations, platform by platform, dependencies first.
    pub items: Vec<Planned<'a>>,
}

impl<'a> Plan<'a> {
    /// Computes the derivations of `graph` for `platforms`, given where each platform's
    /// builder identities come from and, for Rust extensions (`CargoPgrx`), the Rust
    /// compiler's identity, which joins theirs as `<builder>+<rust>`. Pure: nothing is
    /// read or run.
    pub fn new(
        graph: &Graph<'a>,
        image: &ImageDef,
        platforms: &[Platform],
        builders: &BTreeMap<Platform, Builders<'_>>,
        rust: Option<&str>,
    ) -> Result<Self, NoBuilder> {
        let mut items = Vec::new();
        for &platform in platforms {
            let mut hashes: BTreeMap<&RecipeName, DrvHash> = BTreeMap::new();
            for recipe in &graph.order {
                let r = &recipe.recipe;
                // Builtins ship with the base image: no derivation; the builder identity
                // covers them for their dependents.
                let Some(commit) = r.commit() else { continue };
                let mut build_packages = r.build_packages.clone();
                build_packages.sort();
                build_packages.dedup();
                let drv = Derivation {
                    protocol: PROTOCOL,
                    name: r.name.clone(),
                    platform,
                    pg_major: image.pg_major,
                    commit,
                    subdir: r.subdir.clone(),
                    build_kind: r.build.kind_name().to_owned(),
                    build_flags: r.build.hash_inputs(),
                    build_packages: build_packages.clone(),
                    builder: {
                        let no_builder = |problem| NoBuilder {
                            name: r.name.clone(),
                            problem,
                        };
                        let base = builders
                            .get(&platform)
                            .ok_or_else(|| no_builder(LockProblem::NoPlatform { platform }))?
                            .identity(
                                platform,
                                &build_packages,
                                r.emulate_arm64 && platform == Platform::Arm64,
                            )
                            .map_err(no_builder)?;
                        match (&r.build, rust) {
                            (Build::CargoPgrx { .. }, Some(rust)) => base.with_rust(rust),
                            _ => base,
                        }
                    },
                    deps: r
                        .depends
                        .iter()
                        .filter_map(|d| Some((d.clone(), *hashes.get(d)?)))
                        .collect(),
                };
                let hash = drv.hash();
                hashes.insert(&r.name, hash);
                items.push(Planned { recipe, drv, hash });
            }
        }
        Ok(Self { items })
    }

    /// The derivations for one platform.
    pub fn for_platform(&self, platform: Platform) -> impl Iterator<Item = &Planned<'a>> {
        self.items
            .iter()
            .filter(move |p| p.drv.platform == platform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{RecipeSelection, RecipeSet, SourceFile};

    fn set(recipes: &[&str]) -> RecipeSet {
        let mut set = RecipeSet::default();
        for text in recipes {
            let recipe: crate::recipe::Recipe = ron::from_str(text).unwrap();
            let file = SourceFile::new(std::path::Path::new("x.ron"), (*text).to_owned());
            set.recipes
                .insert(recipe.name.clone(), LoadedRecipe { recipe, file });
        }
        set
    }

    #[test]
    fn the_rust_compiler_is_an_input_of_rust_extensions_only() {
        let commit = "a".repeat(40);
        let recipes = set(&[
            &format!(
                "(name: \"c_ext\", kind: Extension, source: Git(url: \"u\", commit: \"{commit}\"), build: Pgxs())"
            ),
            &format!(
                "(name: \"rs_ext\", kind: Extension, source: Git(url: \"u\", commit: \"{commit}\"), build: CargoPgrx(pgrx: \"0.16.1\"), depends: [\"c_ext\"])"
            ),
        ]);
        let graph = Graph::resolve(&recipes, &RecipeSelection::All).unwrap();
        let image: ImageDef = ron::from_str(
            r#"(name: "i", flavor: "t", pg_major: 18, pg_version: "18.6", platforms: {})"#,
        )
        .unwrap();
        let builders = [(
            Platform::Amd64,
            Builders::Host(BuilderId::new("host:abc").unwrap()),
        )]
        .into();
        let plan = |rust| {
            Plan::new(&graph, &image, &[Platform::Amd64], &builders, rust)
                .unwrap()
                .items
                .iter()
                .map(|p| (p.drv.name.to_string(), (p.drv.builder.clone(), p.hash)))
                .collect::<BTreeMap<_, _>>()
        };
        let (old, new) = (plan(Some("rust:1")), plan(Some("rust:2")));
        assert_eq!(old["c_ext"], new["c_ext"]);
        assert_eq!(new["rs_ext"].0.as_str(), "host:abc+rust:2");
        assert_ne!(old["rs_ext"].1, new["rs_ext"].1);
    }
}
