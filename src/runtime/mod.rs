//! What the image carries beside the extensions: the self-tuning entrypoint (one POSIX sh
//! script for both architectures, also behind `azb autoconfig`), and the version-info
//! files describing exactly what went in, the first-boot init scripts, the default preload
//! list, the smoke queries, and the SBOM (CycloneDX).
//!
//! Owns the content of those files. Never writes layers (image does) and never builds.

mod catalog;
mod entrypoint;
mod initdb;
mod preload;
mod sbom;
mod smoke;
mod version_info;

pub use catalog::extensions_md;
pub use entrypoint::{
    Autoconfig, AutoconfigError, ENTRYPOINT_PATH, Settings, autoconfig, entrypoint_file,
};
pub use initdb::{INITDB_DIR, extensions_sql, init_files};
pub use preload::{
    ALWAYS_PRELOADED, PRELOAD_PATH, library_name, preload_file, preload_libraries, preload_list,
};
pub use sbom::{BuiltComponent, ImageBuild, SBOM_PATH, artifact_license, sbom_file, sbom_json};
pub use smoke::{SMOKE_PATH, smoke_file, smoke_sql};
pub use version_info::{ExtensionInfo, VersionInfo, created, labels, rfc3339, tags};

/// A file for the image's runtime layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFile {
    /// Absolute path in the image.
    pub path: String,
    /// Content.
    pub contents: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}
