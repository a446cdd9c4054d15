//! The package lock (`builders.lock`): the exact Debian packages of every builder image
//! (name, version, architecture, sha256 from the archive's index) and the PostgreSQL
//! toolchain each platform builds against. `azb lock update` writes it; everything else
//! only reads it, so two machines with the same lock compute the same builder identities
//! and DrvHashes, whatever their own Debian index says today.
//!
//! Owns the lock's model, its text form and the builder identity derived from it. Never
//! resolves packages (fetch does) nor makes images (build does).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Platform;

/// Bumped when the lock's meaning changes; part of every builder identity.
pub const LOCK_VERSION: u32 = 1;

/// How an emulated builder's identity starts (a cross or native one's: `docker:`).
pub const EMULATED_PREFIX: &str = "docker-emulated:";

/// The lock file's name in the project root.
pub const LOCK_FILE: &str = "builders.lock";

/// One Debian package, exactly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "Package")]
pub struct LockedPackage {
    /// Package name (`libsodium-dev`).
    pub name: String,
    /// Debian version (`1.0.18-1`).
    pub version: String,
    /// Debian architecture (`amd64`, `arm64`, `all`).
    pub arch: String,
    /// sha256 of the .deb, from the archive's index.
    pub sha256: String,
}

impl LockedPackage {
    /// `name:arch=version`, as apt and mmdebstrap take it.
    pub fn apt_spec(&self) -> String {
        if self.arch == "all" {
            format!("{}={}", self.name, self.version)
        } else {
            format!("{}:{}={}", self.name, self.arch, self.version)
        }
    }
}

impl fmt::Display for LockedPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.name, self.version, self.arch)
    }
}

/// The builders of one platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformLock {
    /// blake3 of the PostgreSQL toolchain's pg_config.h and Makefile.global: the toolchain
    /// the builders carry (checked before a builder image is made).
    pub toolchain: String,
    /// Every package of the builder every recipe shares (compilers, build tools), with
    /// their dependencies: the whole root file system.
    pub base: Vec<LockedPackage>,
    /// Per distinct `build_packages` set (its names, sorted, joined by spaces): the
    /// packages it adds to the base, dependencies included.
    pub sets: BTreeMap<String, Vec<LockedPackage>>,
    /// Per runtime package a recipe names (`runtime_packages`): it and its dependencies,
    /// for this platform's architecture. The image carries those its base lacks.
    #[serde(default)]
    pub runtime: BTreeMap<String, Vec<LockedPackage>>,
    /// The emulated builders of a foreign platform (recipes with `emulate_arm64`): the
    /// platform's own packages, run under qemu. Absent when no recipe asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulated: Option<Builders>,
}

/// A base builder and its `build_packages` sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builders {
    /// Every package of the base builder.
    pub base: Vec<LockedPackage>,
    /// Per `build_packages` set: what it adds.
    pub sets: BTreeMap<String, Vec<LockedPackage>>,
}

/// The whole lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "Lock")]
pub struct Lock {
    /// [`LOCK_VERSION`] of the azb that wrote it.
    pub version: u32,
    /// The Debian release the packages come from (`bookworm`).
    pub distribution: String,
    /// Per platform.
    pub platforms: BTreeMap<Platform, PlatformLock>,
}

/// What is wrong with a lock for a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockProblem {
    /// The platform has no builders in the lock.
    #[error("builders.lock has no builders for {platform}")]
    NoPlatform {
        /// The platform.
        platform: Platform,
    },
    /// A recipe asks for an emulated builder the lock does not have.
    #[error("builders.lock has no emulated builders for {platform}")]
    NoEmulated {
        /// The platform.
        platform: Platform,
    },
    /// A recipe's runtime package is not in the lock.
    #[error("builders.lock has no runtime package `{package}` for {platform}")]
    NoRuntime {
        /// The platform.
        platform: Platform,
        /// The package.
        package: String,
    },
    /// A recipe's `build_packages` set is not in the lock.
    #[error("builders.lock has no builder for {platform} with build_packages [{set}]")]
    NoSet {
        /// The platform.
        platform: Platform,
        /// The set's key.
        set: String,
    },
}

/// The key of a `build_packages` set: its names, sorted, unique, joined by spaces.
pub fn set_key(packages: &[String]) -> String {
    let mut names: Vec<&str> = packages.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names.join(" ")
}

impl Lock {
    /// Parses the lock's text.
    pub fn parse(text: &str) -> Result<Self, ron::error::SpannedError> {
        ron::Options::default().from_str(text)
    }

    /// The lock as written to disk: a header comment and pretty RON, one package a line.
    pub fn render(&self) -> String {
        let config = ron::ser::PrettyConfig::new()
            .depth_limit(4)
            .indentor("  ".to_owned())
            .struct_names(true);
        let body = ron::ser::to_string_pretty(self, config)
            .expect("a lock of strings and maps always serialises");
        format!(
            "// The exact Debian packages of azb's builder images and the toolchain they carry.\n\
             // Written by `azb lock update`; do not edit. Part of every builder identity.\n{body}\n"
        )
    }

    /// Every package of the builder for `build_packages` on `platform` (base first, then
    /// the set's), emulated or not, or why the lock cannot say.
    pub fn packages(
        &self,
        platform: Platform,
        build_packages: &[String],
        emulated: bool,
    ) -> Result<Vec<&LockedPackage>, LockProblem> {
        let locked = self
            .platforms
            .get(&platform)
            .ok_or(LockProblem::NoPlatform { platform })?;
        let (base, sets) = if emulated {
            let builders = locked
                .emulated
                .as_ref()
                .ok_or(LockProblem::NoEmulated { platform })?;
            (&builders.base, &builders.sets)
        } else {
            (&locked.base, &locked.sets)
        };
        let mut all: Vec<&LockedPackage> = base.iter().collect();
        let key = set_key(build_packages);
        if !key.is_empty() {
            let extra = sets
                .get(&key)
                .ok_or(LockProblem::NoSet { platform, set: key })?;
            all.extend(extra);
        }
        Ok(all)
    }

    /// The packages an image on `platform` needs for `runtime_packages` (their
    /// dependencies included), sorted and unique.
    pub fn runtime_packages(
        &self,
        platform: Platform,
        runtime_packages: &[String],
    ) -> Result<Vec<&LockedPackage>, LockProblem> {
        let locked = self
            .platforms
            .get(&platform)
            .ok_or(LockProblem::NoPlatform { platform })?;
        let mut all = Vec::new();
        for name in runtime_packages {
            let closure = locked
                .runtime
                .get(name)
                .ok_or_else(|| LockProblem::NoRuntime {
                    platform,
                    package: name.clone(),
                })?;
            all.extend(closure);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Exactly the packages named (each as its own closure in the lock pins it), without
    /// their dependencies, in the order given.
    pub fn exact_packages(
        &self,
        platform: Platform,
        names: &[String],
    ) -> Result<Vec<&LockedPackage>, LockProblem> {
        names
            .iter()
            .map(|name| {
                self.runtime_packages(platform, std::slice::from_ref(name))?
                    .into_iter()
                    .find(|p| p.name == *name)
                    .ok_or_else(|| LockProblem::NoRuntime {
                        platform,
                        package: name.clone(),
                    })
            })
            .collect()
    }

    /// The identity of the builder for `build_packages` on `platform`, as it enters every
    /// derivation built with it: `docker:` (`docker-emulated:` for an emulated builder) +
    /// blake3 over the lock version, the platform, the mode, the toolchain and each
    /// package of the builder (sorted, length-prefixed).
    pub fn builder_identity(
        &self,
        platform: Platform,
        build_packages: &[String],
        emulated: bool,
    ) -> Result<String, LockProblem> {
        let mut packages = self.packages(platform, build_packages, emulated)?;
        packages.sort();
        let toolchain = &self.platforms[&platform].toolchain;
        let mut hasher = blake3::Hasher::new();
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"azb-docker-builder");
        field(&LOCK_VERSION.to_le_bytes());
        field(self.distribution.as_bytes());
        field(platform.as_str().as_bytes());
        if emulated {
            field(b"emulated");
        }
        field(toolchain.as_bytes());
        for p in packages {
            for part in [&p.name, &p.version, &p.arch, &p.sha256] {
                field(part.as_bytes());
            }
        }
        let prefix = if emulated { EMULATED_PREFIX } else { "docker:" };
        Ok(format!("{prefix}{}", hasher.finalize().to_hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "ab".repeat(32),
        }
    }

    fn lock() -> Lock {
        let mut sets = BTreeMap::new();
        sets.insert(
            "libsodium-dev".into(),
            vec![package("libsodium-dev", "1.0.18-1")],
        );
        sets.insert("libcurl-dev".into(), vec![package("libcurl-dev", "7.88")]);
        Lock {
            version: LOCK_VERSION,
            distribution: "bookworm".into(),
            platforms: [(
                Platform::Amd64,
                PlatformLock {
                    toolchain: "t".into(),
                    base: vec![package("gcc", "12"), package("make", "4.3")],
                    sets,
                    runtime: BTreeMap::new(),
                    emulated: None,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn a_set_changes_only_its_own_builder() {
        let lock = lock();
        let none = lock.builder_identity(Platform::Amd64, &[], false).unwrap();
        let sodium = lock
            .builder_identity(Platform::Amd64, &["libsodium-dev".into()], false)
            .unwrap();
        let curl = lock
            .builder_identity(Platform::Amd64, &["libcurl-dev".into()], false)
            .unwrap();
        assert!(none.starts_with("docker:"));
        assert_ne!(none, sodium);
        assert_ne!(sodium, curl);
        let mut newer = lock.clone();
        newer
            .platforms
            .get_mut(&Platform::Amd64)
            .unwrap()
            .sets
            .get_mut("libsodium-dev")
            .unwrap()[0]
            .version = "1.0.19-1".into();
        assert_eq!(
            newer.builder_identity(Platform::Amd64, &[], false).unwrap(),
            none
        );
        assert_ne!(
            newer
                .builder_identity(Platform::Amd64, &["libsodium-dev".into()], false)
                .unwrap(),
            sodium
        );
    }

    #[test]
    fn a_set_missing_from_the_lock_is_named() {
        let problem = lock()
            .builder_identity(
                Platform::Amd64,
                &["zz".into(), "aa".into(), "zz".into()],
                false,
            )
            .unwrap_err();
        assert_eq!(
            problem.to_string(),
            "builders.lock has no builder for linux/amd64 with build_packages [aa zz]"
        );
        assert_eq!(
            lock()
                .builder_identity(Platform::Arm64, &[], false)
                .unwrap_err(),
            LockProblem::NoPlatform {
                platform: Platform::Arm64
            }
        );
    }

    #[test]
    fn the_lock_reads_back_what_it_writes() {
        let lock = lock();
        let text = lock.render();
        assert!(text.contains("Package("), "{text}");
        assert_eq!(Lock::parse(&text).unwrap(), lock);
    }
}
