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
use crate::recipe::{CommitSha, ImageDef, LoadedRecipe, Platform, RecipeName};

pub use encode::PROTOCOL;

crate::digest::hash_newtype!(
    /// blake3 of a derivation's canonical encoding: the name of a build.
    DrvHash, 32, "derivation hash"
);

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
    pub builder: String,
    /// Dependencies' hashes.
    pub deps: BTreeMap<RecipeName, DrvHash>,
}

impl Derivation {
    /// The derivation's hash: blake3 of its canonical encoding.
    pub fn hash(&self) -> DrvHash {
        DrvHash::from_bytes(*blake3::hash(&encode::canonical(self)).as_bytes())
    }

    /// The inputs that differ from `old`, by name (`commit`, `deps.foo`, `builder`, ...).
    pub fn changed_inputs(&self, old: &Derivation) -> Vec<String> {
        let mut changed = Vec::new();
        let mut check = |name: &str, same: bool| {
            if !same {
                changed.push(name.to_owned());
            }
        };
        check("protocol", self.protocol == old.protocol);
        check("pg_major", self.pg_major == old.pg_major);
        check("commit", self.commit == old.commit);
        check("subdir", self.subdir == old.subdir);
        check("build_kind", self.build_kind == old.build_kind);
        check("build_flags", self.build_flags == old.build_flags);
        check("build_packages", self.build_packages == old.build_packages);
        check("builder", self.builder == old.builder);
        let names: std::collections::BTreeSet<&RecipeName> =
            self.deps.keys().chain(old.deps.keys()).collect();
        for name in names {
            check(
                &format!("deps.{name}"),
                self.deps.get(name) == old.deps.get(name),
            );
        }
        changed
    }
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
    /// Computes the derivations of `graph` for `platforms`, given each platform's builder
    /// identity. Pure: nothing is read or run.
    pub fn new(
        graph: &Graph<'a>,
        image: &ImageDef,
        platforms: &[Platform],
        builders: &BTreeMap<Platform, String>,
    ) -> Self {
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
                    build_packages,
                    builder: builders.get(&platform).cloned().unwrap_or_default(),
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
        Self { items }
    }

    /// The derivations for one platform.
    pub fn for_platform(&self, platform: Platform) -> impl Iterator<Item = &Planned<'a>> {
        self.items
            .iter()
            .filter(move |p| p.drv.platform == platform)
    }
}
