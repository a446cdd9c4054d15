//! The environment variables azb reads, in one place, each with its meaning.
//!
//! Owns variable names and their parsing into plain values. Never touches the disk.

use std::path::PathBuf;

/// Store directory; overrides the project's `cache/` (like `--cache-dir`).
pub const CACHE_DIR: &str = "AZB_CACHE_DIR";
/// Source overrides: `PREFIX=TARGET` pairs separated by `;` or newlines. A recipe URL that
/// starts with PREFIX is fetched from TARGET + the rest (a local path or another URL).
/// Never part of any hash.
pub const SOURCE_MIRRORS: &str = "AZB_SOURCE_MIRRORS";
/// Set to `1` to let builds reach the network (they run in an empty network namespace by
/// default).
pub const BUILD_NETWORK: &str = "AZB_BUILD_NETWORK";

/// Set to `0` to build without the compile cache (each recipe's ccache directory in the
/// store, carried into its builder container and back). Never part of any hash.
pub const COMPILE_CACHE: &str = "AZB_COMPILE_CACHE";

/// How long, in whole seconds, a builder container no build took keeps running for the
/// next build of the same store (default 600); `0` leaves none after a run.
pub const KEEP_WARM: &str = "AZB_KEEP_WARM";

/// The apt sources file (deb822 `.sources` or one-line `.list`) naming the Debian archive
/// that builder packages are resolved against (`azb lock update`) and installed from;
/// else `/etc/apt/sources.list.d/debian.sources`. Never part of any hash: the lock is.
pub const APT_SOURCES: &str = "AZB_APT_SOURCES";

/// Remote caches to substitute from, in order (`file:///DIR`, `s3://BUCKET/PREFIX`,
/// `oci://HOST/REPO`),
/// separated by spaces; replaces the project's `cache.ron` list.
pub const SUBSTITUTERS: &str = "AZB_SUBSTITUTERS";
/// Public keys (`name:hex`) whose signatures azb trusts, separated by spaces; replaces the
/// project's `cache.ron` list.
pub const TRUSTED_KEYS: &str = "AZB_TRUSTED_KEYS";
/// The secret key file (`azb cache keygen`) that signs what `azb cache push` uploads. A
/// machine without one only reads.
pub const SIGNING_KEY_FILE: &str = "AZB_SIGNING_KEY_FILE";

/// How long to wait for a lock another azb process holds (a build of the same derivation,
/// a source mirror, a builder image being made), in whole seconds; unset waits as long as
/// it takes.
pub const LOCK_TIMEOUT: &str = "AZB_LOCK_TIMEOUT";

/// The memory a builder container may use, in docker's syntax (`16g`, `8192m`); unset,
/// three quarters of this machine's memory.
pub const BUILD_MEMORY: &str = "AZB_BUILD_MEMORY";

/// User name and password for an `oci://` cache's registry (both, or anonymous).
pub const REGISTRY_USERNAME: &str = "AZB_REGISTRY_USERNAME";
/// See [`REGISTRY_USERNAME`].
pub const REGISTRY_PASSWORD: &str = "AZB_REGISTRY_PASSWORD";

/// Reads a path-valued variable; empty counts as unset.
pub fn path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads a string variable; empty counts as unset.
pub fn string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads a duration in whole seconds; empty counts as unset, anything else is an error
/// that says what was found.
pub fn seconds(name: &str) -> Result<Option<std::time::Duration>, String> {
    let Some(text) = string(name) else {
        return Ok(None);
    };
    text.trim()
        .parse::<u64>()
        .map(|s| Some(std::time::Duration::from_secs(s)))
        .map_err(|_| format!("{name} must be a whole number of seconds, got '{text}'"))
}

/// Reads a boolean variable: `1`, `true`, `yes` are true.
pub fn flag(name: &str) -> bool {
    string(name).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}
