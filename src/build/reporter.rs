//! How builds tell the outside what they are doing. The CLI draws progress bars from
//! these events; the library never imports a progress crate.

use std::time::Duration;

use crate::drv::DrvHash;
use crate::recipe::{Platform, RecipeName};

/// Receives build events; implementations must be cheap and thread-safe.
pub trait Reporter: Send + Sync {
    /// The scheduler knows how many derivations it will build.
    fn start(&self, _to_build: usize) {}
    /// A derivation came from a remote cache.
    fn substituted(&self, _name: &RecipeName, _platform: Platform, _url: &str) {}
    /// A source is being fetched.
    fn fetching(&self, _name: &RecipeName, _url: &str) {}
    /// A build began.
    fn build_started(&self, _drv: &DrvHash, _name: &RecipeName, _platform: Platform) {}
    /// A build moved to a new step.
    fn build_step(&self, _drv: &DrvHash, _step: &str) {}
    /// A build ended (successfully or not).
    fn build_finished(&self, _drv: &DrvHash, _ok: bool, _elapsed: Duration) {}
    /// Something worth a warning (a quarantined object, ...).
    fn warn(&self, _message: &str) {}
}

/// A reporter that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {}
