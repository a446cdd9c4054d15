//! The project's remote cache settings (`cache.ron` beside `recipes/`), and the
//! environment that replaces them. Credentials never come from here: S3 ones from the
//! `AWS_*` environment, the signing key from the file `AZB_SIGNING_KEY_FILE` names.

use std::path::Path;

use serde::Deserialize;

use super::{Error, PublicKey, Trust};
use crate::fs::{FsError, err};

/// `cache.ron`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename = "Cache", deny_unknown_fields)]
pub struct CacheConfig {
    /// Remote caches to substitute from, in order.
    #[serde(default)]
    pub substituters: Vec<String>,
    /// Public keys (`name:hex`) whose signatures are trusted.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Where `azb cache push` writes; default: the first substituter.
    #[serde(default)]
    pub push_to: Option<String>,
}

impl CacheConfig {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = match err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(FsError::new("read", path, e).into()),
        };
        ron::from_str(&text).map_err(|e| Error::BadConfig {
            path: path.to_owned(),
            why: e.to_string(),
        })
    }

    /// Replaces the lists the environment sets (space-separated; empty counts as unset).
    pub fn with_env(mut self, substituters: Option<String>, trusted_keys: Option<String>) -> Self {
        let words = |text: String| text.split_whitespace().map(str::to_owned).collect();
        if let Some(text) = substituters {
            self.substituters = words(text);
        }
        if let Some(text) = trusted_keys {
            self.trusted_keys = words(text);
        }
        self
    }

    /// The trusted keys, parsed.
    pub fn trust(&self) -> Result<Trust, Error> {
        let keys = self
            .trusted_keys
            .iter()
            .map(|k| PublicKey::parse(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust::new(keys))
    }

    /// Where pushes go: `to`, else `push_to`, else the first substituter.
    pub fn push_target(&self, to: Option<&str>) -> Option<String> {
        to.map(str::to_owned)
            .or_else(|| self.push_to.clone())
            .or_else(|| self.substituters.first().cloned())
    }
}
