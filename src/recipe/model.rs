//! The recipe data model as it appears in `recipes/<name>.ron`, with the newtypes that are
//! checked while parsing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

crate::digest::hash_newtype!(
    /// A 40-digit lowercase hex git commit id: the only way a recipe pins its source.
    CommitSha, 20, "commit", BadCommit
);

/// A commit text that is not 40 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a commit: a pin is 40 lowercase hex digits (a full SHA-1, not a tag or a short hash)"
)]
pub struct BadCommit(pub String);

impl From<crate::digest::HashParseError> for BadCommit {
    fn from(error: crate::digest::HashParseError) -> Self {
        Self(error.text)
    }
}

/// A recipe name: lowercase ASCII letters, digits and `_`, starting with a letter.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RecipeName(String);

impl RecipeName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::borrow::Borrow<str> for RecipeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A text that cannot be a recipe name.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a recipe name: use lowercase letters, digits and `_`, starting with a letter"
)]
pub struct BadName(pub String);

impl FromStr for RecipeName {
    type Err = BadName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if first_ok
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && s.len() <= 64
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadName(s.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for RecipeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a recipe provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipeKind {
    /// A PostgreSQL extension (CREATE EXTENSION, or a preload-only module).
    Extension,
    /// A program installed beside PostgreSQL; no CREATE EXTENSION.
    Tool,
    /// A module that ships with PostgreSQL itself; builds nothing.
    Builtin,
}

impl RecipeKind {
    /// The kind as people and JSON see it: `extension`, `tool`, `builtin`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipeKind::Extension => "extension",
            RecipeKind::Tool => "tool",
            RecipeKind::Builtin => "builtin",
        }
    }
}

/// Where a recipe's source comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Source {
    /// Ships with PostgreSQL (the base image has it); nothing to fetch or build.
    #[default]
    Builtin,
    /// A git repository pinned by commit.
    Git {
        /// Upstream URL. Not part of any hash: a mirror may serve it.
        url: String,
        /// The pin.
        commit: CommitSha,
        /// A label for people; `recipe check --online` verifies it points at `commit`.
        #[serde(default)]
        tag: Option<String>,
    },
}

/// How a recipe builds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Build {
    /// Nothing to build (builtin modules).
    #[default]
    Builtin,
    /// PostgreSQL's extension build system: `make` and `make install` against pg_config.
    Pgxs {
        /// Extra `make` arguments (`NAME=value` or targets), in order.
        #[serde(default)]
        flags: Vec<String>,
    },
    /// A plain Makefile (`make`, `make install PREFIX=…`).
    Make {
        /// Extra `make` arguments, in order.
        #[serde(default)]
        flags: Vec<String>,
    },
    /// CMake.
    Cmake {
        /// Extra `cmake` arguments (`-DNAME=value`), in order.
        #[serde(default)]
        flags: Vec<String>,
    },
    /// Meson.
    Meson {
        /// Extra `meson setup` arguments, in order.
        #[serde(default)]
        flags: Vec<String>,
    },
    /// `./configure` (after `autogen.sh` when there is no configure script).
    Autotools {
        /// Extra `configure` arguments, in order.
        #[serde(default)]
        flags: Vec<String>,
    },
    /// A Rust extension built with cargo-pgrx.
    CargoPgrx {
        /// The cargo-pgrx version to build with (matches the pgrx the source uses).
        pgrx: String,
        /// Cargo features to enable (e.g. `pg18`).
        #[serde(default)]
        features: Vec<String>,
        /// Build without the crate's default features.
        #[serde(default)]
        no_default_features: bool,
    },
    /// Only SQL and control files, copied as they are.
    Sql,
    /// An escape hatch: a shell script run in the source tree with DESTDIR and PG_CONFIG.
    Script {
        /// The script's text.
        script: String,
    },
}

impl Build {
    /// The build kind's name as the derivation encodes it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Build::Builtin => "builtin",
            Build::Pgxs { .. } => "pgxs",
            Build::Make { .. } => "make",
            Build::Cmake { .. } => "cmake",
            Build::Meson { .. } => "meson",
            Build::Autotools { .. } => "autotools",
            Build::CargoPgrx { .. } => "cargo-pgrx",
            Build::Sql => "sql",
            Build::Script { .. } => "script",
        }
    }

    /// Everything else about the build kind that decides the output, as an ordered list
    /// (a derivation input).
    pub fn hash_inputs(&self) -> Vec<String> {
        match self {
            Build::Pgxs { flags }
            | Build::Make { flags }
            | Build::Cmake { flags }
            | Build::Meson { flags }
            | Build::Autotools { flags } => flags.clone(),
            Build::CargoPgrx {
                pgrx,
                features,
                no_default_features,
            } => vec![
                format!("pgrx={pgrx}"),
                format!("features={}", features.join(",")),
                format!("no_default_features={no_default_features}"),
            ],
            Build::Script { script } => vec![format!("script={script}")],
            Build::Builtin | Build::Sql => Vec::new(),
        }
    }
}

/// How the extension behaves in the running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFlags {
    /// Must be in shared_preload_libraries to work.
    #[serde(default)]
    pub preload: bool,
    /// CREATE EXTENSION in the default init SQL.
    #[serde(default)]
    pub create: bool,
    /// A module with no CREATE EXTENSION (e.g. auto_explain).
    #[serde(default)]
    pub preload_only: bool,
}

fn yes() -> bool {
    true
}

/// One recipe: an extension, tool or builtin module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Unique name; equals the file stem.
    pub name: RecipeName,
    /// Upstream version, for people and version-info.
    #[serde(default)]
    pub version: String,
    /// Extension, tool or builtin.
    pub kind: RecipeKind,
    /// Catalog category, for people.
    #[serde(default)]
    pub category: String,
    /// One line for people.
    #[serde(default)]
    pub description: String,
    /// The licence upstream declares, as an SPDX expression (`recipe add` fills it from the
    /// tree). Metadata for the SBOM: not part of any hash.
    #[serde(default)]
    pub license: Option<String>,
    /// The pinned source (builtins have none).
    #[serde(default)]
    pub source: Source,
    /// Directory inside the source tree to build in.
    #[serde(default)]
    pub subdir: Option<String>,
    /// The build kind and its flags (builtins build nothing).
    #[serde(default)]
    pub build: Build,
    /// Recipes needed at build time and run time.
    #[serde(default)]
    pub depends: Vec<RecipeName>,
    /// Builder-image packages the build needs.
    #[serde(default)]
    pub build_packages: Vec<String>,
    /// Build linux/arm64 in an emulated arm64 builder (qemu) instead of cross-compiling in
    /// the amd64 one: the fallback for builds that cannot cross (about 8× slower).
    #[serde(default)]
    pub emulate_arm64: bool,
    /// Shared libraries the final image must carry.
    #[serde(default)]
    pub runtime_packages: Vec<String>,
    /// Behaviour in the running server.
    #[serde(default)]
    pub runtime: RuntimeFlags,
    /// Whether the recipe is part of the image.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A query run after CREATE EXTENSION that proves the extension works.
    #[serde(default)]
    pub smoke: Option<String>,
}

impl Recipe {
    /// The pinned commit; None for builtins.
    pub fn commit(&self) -> Option<CommitSha> {
        match &self.source {
            Source::Git { commit, .. } => Some(*commit),
            Source::Builtin => None,
        }
    }

    /// The upstream URL; empty for builtins.
    pub fn url(&self) -> &str {
        match &self.source {
            Source::Git { url, .. } => url,
            Source::Builtin => "",
        }
    }

    /// The tag label, if any.
    pub fn tag(&self) -> Option<&str> {
        match &self.source {
            Source::Git { tag, .. } => tag.as_deref(),
            Source::Builtin => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_sha_accepts_only_40_lowercase_hex() {
        let good = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(good.parse::<CommitSha>().unwrap().to_string(), good);
        for bad in [
            &good[..39],
            "v0.8.2",
            &good.to_uppercase(),
            &format!("{good}0"),
        ] {
            assert!(bad.parse::<CommitSha>().is_err(), "{bad}");
        }
    }

    #[test]
    fn recipe_names_are_identifiers() {
        assert!("pg_cron".parse::<RecipeName>().is_ok());
        assert!("postgis3".parse::<RecipeName>().is_ok());
        for bad in ["", "Vector", "3d", "a-b", "a/b", "a b"] {
            assert!(bad.parse::<RecipeName>().is_err(), "{bad}");
        }
    }
}
