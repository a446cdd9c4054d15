//! Errors of image assembly.

use std::path::PathBuf;

use crate::fs::FsError;
use crate::recipe::Platform;

/// What can go wrong assembling an image.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// `--output` is neither `oci:DIR` nor `docker-archive:FILE`.
    #[error("unknown output `{0}`: expected oci:DIR or docker-archive:FILE")]
    BadOutput(String),
    /// A docker-archive can hold one platform only.
    #[error(
        "a docker-archive holds one platform, but {0} were given; pass --platform amd64 or arm64"
    )]
    TooManyPlatforms(usize),
    /// An OCI document could not be read.
    #[error("cannot read OCI document `{path}`")]
    Document {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The base layout has no manifest for this reference and platform.
    #[error("the base image layout `{dir}` has no manifest for {platform}{}", reference.as_ref().map(|r| format!(" tagged `{r}`")).unwrap_or_default())]
    BaseNotFound {
        /// The layout.
        dir: PathBuf,
        /// The reference asked for.
        reference: Option<String>,
        /// The platform.
        platform: Platform,
    },
    /// The base image is for another architecture.
    #[error("the base image in `{dir}` is for `{found}`, not {platform}")]
    BaseArchitecture {
        /// The layout.
        dir: PathBuf,
        /// Its architecture.
        found: String,
        /// The platform wanted.
        platform: Platform,
    },
    /// A blob's content does not match its digest.
    #[error("blob `{path}` does not match its digest (expected {expected}, found sha256:{found})")]
    BlobMismatch {
        /// The blob file.
        path: PathBuf,
        /// The digest it should have.
        expected: String,
        /// The sha256 it has.
        found: String,
    },
    /// An artifact tar could not be read.
    #[error("cannot read the artifact of `{artifact}`")]
    ArtifactTar {
        /// The recipe.
        artifact: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An artifact holds a path outside the artifact layout.
    #[error(
        "artifact `{artifact}` holds `{path}`, outside lib/, bin/, share/, include/ and licenses/"
    )]
    ArtifactPath {
        /// The recipe.
        artifact: String,
        /// The path.
        path: String,
    },
    /// An ELF file is for another machine than the image's platform.
    #[error(
        "`{file}` in artifact `{artifact}` is an ELF file for machine {found}, which cannot go into a {platform} image (needs {expected})"
    )]
    WrongMachine {
        /// The recipe.
        artifact: String,
        /// The file.
        file: String,
        /// The platform.
        platform: Platform,
        /// e_machine found.
        found: u16,
        /// e_machine expected.
        expected: u16,
    },
}
