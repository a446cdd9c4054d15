//! Host toolchains: a PostgreSQL install tree (pg_config, server headers, PGXS) plus a C
//! compiler and strip for one platform, and the identity that enters derivations.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Error;
use crate::fs::{FsError, err};
use crate::recipe::{Platform, Toolchain};

/// A resolved host toolchain.
#[derive(Debug, Clone)]
pub struct HostToolchain {
    /// Target platform.
    pub platform: Platform,
    /// PostgreSQL install prefix.
    pub prefix: PathBuf,
    /// C compiler.
    pub cc: String,
    /// strip for the platform.
    pub strip: String,
}

impl HostToolchain {
    /// Resolves an image definition's host toolchain against the project root (None
    /// when the platform builds in builder containers).
    pub fn from_def(platform: Platform, def: &Toolchain, root: &Path) -> Option<Self> {
        match def {
            Toolchain::Host { prefix, cc, strip } => Some(Self {
                platform,
                prefix: root.join(prefix),
                cc: cc.clone(),
                strip: strip.clone(),
            }),
            Toolchain::Docker { .. } => None,
        }
    }

    fn problem(&self, problem: impl Into<String>) -> Error {
        Error::Toolchain {
            platform: self.platform,
            prefix: self.prefix.clone(),
            problem: problem.into(),
        }
    }

    /// The builder identity that enters every derivation built with this toolchain:
    /// `host:` + blake3 over the platform, the compiler's target and version, and the
    /// toolchain's pg_config.h and Makefile.global (which carry PostgreSQL's version and
    /// build flags). Paths on this machine are not part of it.
    pub fn identity(&self) -> Result<String, Error> {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"azb-host-toolchain\0");
        hasher.update(self.platform.as_str().as_bytes());
        let output = Command::new(&self.cc)
            .args(["-dumpmachine", "-dumpfullversion"])
            .output()
            .map_err(|e| self.problem(format!("cannot run the C compiler `{}`: {e}", self.cc)))?;
        if !output.status.success() {
            return Err(self.problem(format!("`{} -dumpmachine` failed", self.cc)));
        }
        let machine = String::from_utf8_lossy(&output.stdout);
        if !machine.starts_with(
            self.platform
                .gnu_triple()
                .split('-')
                .next()
                .unwrap_or_default(),
        ) {
            return Err(self.problem(format!(
                "the C compiler `{}` targets `{}`, not {}",
                self.cc,
                machine.lines().next().unwrap_or_default(),
                self.platform
            )));
        }
        hasher.update(&output.stdout);
        for relative in ["include/server/pg_config.h", "lib/pgxs/src/Makefile.global"] {
            let path = self.prefix.join(relative);
            let bytes = err::read(&path).map_err(|e| {
                self.problem(format!(
                    "{} (run scripts/fetch-toolchain.sh)",
                    FsError::new("read", &path, e)
                ))
            })?;
            hasher.update(relative.as_bytes());
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(format!("host:{}", hasher.finalize().to_hex()))
    }
}
