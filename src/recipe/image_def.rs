//! The image definition (`stacks/<name>.ron`): which PostgreSQL, which platforms, the base
//! image and toolchain of each, and which recipes go in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Platform, RecipeName};

/// What one image is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "Image")]
pub struct ImageDef {
    /// Repository name of the image, e.g. `azb/postgres`.
    pub name: String,
    /// The TYPE part of the tag `MM.mm-YYYYMMDDHHmm-TYPE`.
    pub flavor: String,
    /// PostgreSQL major version; part of every derivation.
    pub pg_major: u32,
    /// PostgreSQL version of the base image (`18.6`), for tags and version-info.
    pub pg_version: String,
    /// Per platform: base image and toolchain.
    pub platforms: BTreeMap<Platform, PlatformDef>,
    /// Which recipes go in.
    #[serde(default)]
    pub recipes: RecipeSelection,
    /// Overlay files applied to the recipes, in order (relative to the project root).
    #[serde(default)]
    pub overlays: Vec<String>,
    /// Set for an image that runs beside PostgreSQL (PgBouncer, the metrics exporter): it
    /// carries Debian packages and files instead of extensions (`recipes: Only([])`).
    #[serde(default)]
    pub companion: Option<Companion>,
}

/// An image of a program that runs beside PostgreSQL in a stack: the base image, exactly
/// the listed Debian packages (as builders.lock pins them), some project files and its
/// run settings. Its tags are the Debian version of `version_from`, and `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Companion {
    /// The Debian packages it carries: exactly these, not their dependencies (list the
    /// libraries they need that the base lacks; assembly fails naming any library an ELF
    /// file of theirs cannot find).
    pub packages: Vec<String>,
    /// The package whose version tags the image.
    pub version_from: String,
    /// Files it carries: image path → file (relative to the project root).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The user it runs as (a name the base's /etc/passwd has, or a uid).
    pub user: String,
    /// Its entrypoint.
    pub entrypoint: Vec<String>,
    /// Its default arguments.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Environment set over the base's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports it listens on (`6432/tcp`); they replace the base's.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// The signal that stops it cleanly.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// Which recipes an image carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipeSelection {
    /// Every enabled recipe.
    #[default]
    All,
    /// These recipes (and what they depend on).
    Only(Vec<RecipeName>),
}

/// Base image and toolchain for one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformDef {
    /// The image the extension layers go on.
    pub base: BaseImage,
    /// What builds the extensions (builder containers when left out).
    #[serde(default)]
    pub toolchain: Toolchain,
}

/// Where a base image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum BaseImage {
    /// An OCI image layout directory (relative paths are from the project root).
    OciLayout {
        /// The layout directory.
        path: String,
        /// `org.opencontainers.image.ref.name` of the manifest to use.
        #[serde(default)]
        reference: Option<String>,
    },
    /// An image in a registry, pinned by digest (`HOST[:PORT]/REPO@sha256:<64 hex>`; a tag
    /// alone is refused: it can move). Pulled once into the store (`bases/`).
    Registry {
        /// The reference.
        reference: String,
    },
}

impl BaseImage {
    /// For a registry base: `(HOST/REPO, sha256 hex)`, or why the reference is not pinned.
    pub fn pinned(reference: &str) -> Result<(&str, &str), &'static str> {
        let Some((name, digest)) = reference.split_once("@sha256:") else {
            return Err(
                "a registry base must be pinned by digest (NAME@sha256:<64 hex>); a tag can move",
            );
        };
        let hex_ok = digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err("the digest must be sha256: and 64 lowercase hex digits");
        }
        let name = name
            .split_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(name, |(n, _)| n);
        if !name.contains('/') {
            return Err("the name must be HOST[:PORT]/REPO");
        }
        Ok((name, digest))
    }
}

/// A build environment for one platform: which executor builds, with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Toolchain {
    /// The default: builder containers that azb makes from the Debian packages of
    /// `builders.lock` plus this PostgreSQL toolchain, run in the Docker engine with no
    /// network as an unprivileged user. arm64 is cross-compiled in an amd64 builder.
    Docker {
        /// The PostgreSQL install tree of the platform (pg_config, server headers, PGXS)
        /// the builder carries (relative paths are from the project root; by default
        /// `cache/toolchains/pg<major>-<arch>`, where scripts/fetch-toolchain.sh puts it).
        #[serde(default)]
        prefix: Option<String>,
    },
    /// This machine's compiler and a PostgreSQL install tree (pg_config, headers, PGXS).
    Host {
        /// The PostgreSQL install prefix (relative paths are from the project root).
        prefix: String,
        /// The C compiler (`gcc`, `aarch64-linux-gnu-gcc`).
        cc: String,
        /// The strip program for this platform.
        strip: String,
    },
}

impl Default for Toolchain {
    fn default() -> Self {
        Toolchain::Docker { prefix: None }
    }
}

impl Toolchain {
    /// The PostgreSQL install tree for `platform`, relative to the project root.
    pub fn prefix(&self, pg_major: u32, platform: super::Platform) -> String {
        match self {
            Toolchain::Host { prefix, .. }
            | Toolchain::Docker {
                prefix: Some(prefix),
            } => prefix.clone(),
            Toolchain::Docker { prefix: None } => {
                format!("cache/toolchains/pg{pg_major}-{}", platform.oci_arch())
            }
        }
    }
}
