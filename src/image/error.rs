//! Errors of image assembly, used from outside as `image::Error`.

use std::path::PathBuf;

use crate::fs::FsError;
use crate::recipe::Platform;

/// What can go wrong assembling an image.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// An artifact's ELF file needs a library the image does not carry.
    #[error(
        "`{artifact}` ({platform}): {file} needs {library}, which is in neither the base image, its runtime packages nor the artifacts"
    )]
    #[diagnostic(help(
        "add the Debian package that ships it (likely `{package}`) to the recipe's runtime_packages (a companion image: to its packages), then run `azb lock update`"
    ))]
    MissingLibrary {
        /// The recipe.
        artifact: String,
        /// The file, in the image.
        file: String,
        /// The DT_NEEDED entry.
        library: String,
        /// The platform.
        platform: Platform,
        /// The package that most likely ships it.
        package: String,
    },
    /// A runtime package's data could not be read.
    #[error("cannot read the files of Debian package `{package}`")]
    Package {
        /// The package.
        package: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// `--output` is neither `oci:DIR` nor `docker-archive:FILE`.
    #[error("unknown output `{text}`: expected oci:DIR or docker-archive:FILE")]
    BadOutput {
        /// The text given.
        text: String,
    },
    /// The request names no platform.
    #[error("image `{name}` has no platform to assemble")]
    NoPlatforms {
        /// The image name.
        name: String,
    },
    /// The request names no tag.
    #[error("image `{name}` has no tag")]
    NoTags {
        /// The image name.
        name: String,
    },
    /// A tag is not a valid OCI/Docker tag.
    #[error(
        "`{tag}` is not a valid tag: use 1 to 128 of A-Z a-z 0-9 _ . - (not starting with . or -)"
    )]
    BadTag {
        /// The tag.
        tag: String,
    },
    /// A docker-archive can hold one platform only.
    #[error(
        "a docker-archive holds one platform, but {count} were given; pass --platform amd64 or arm64"
    )]
    TooManyPlatforms {
        /// How many platforms were requested.
        count: usize,
    },
    /// An OCI document (index, manifest, config) could not be parsed.
    #[error("cannot parse OCI document `{path}`")]
    Document {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The base layout has no manifest for this reference and platform.
    #[error(
        "the base image layout `{dir}` has no manifest for {platform}{}",
        reference.as_ref().map(|r| format!(" named `{r}`")).unwrap_or_default()
    )]
    BaseNotFound {
        /// The layout directory.
        dir: PathBuf,
        /// The ref name asked for.
        reference: Option<String>,
        /// The platform.
        platform: Platform,
    },
    /// The base image's config is for another architecture.
    #[error("the base image in `{dir}` is for architecture `{found}`, not {platform}")]
    BaseArchitecture {
        /// The layout directory.
        dir: PathBuf,
        /// The architecture its config names.
        found: String,
        /// The platform wanted.
        platform: Platform,
    },
    /// A blob uses a digest algorithm azb cannot check.
    #[error("blob `{digest}` in `{dir}` uses a digest azb cannot check (only sha256)")]
    UnsupportedDigest {
        /// The layout directory.
        dir: PathBuf,
        /// The digest.
        digest: String,
    },
    /// A blob's content does not match its digest.
    #[error("blob `{path}` does not match its digest {expected} (its sha256 is {found})")]
    BlobMismatch {
        /// The blob file.
        path: PathBuf,
        /// The digest it should have.
        expected: oci_spec::image::Digest,
        /// The sha256 it has.
        found: oci_spec::image::Digest,
    },
    /// An artifact tar could not be read.
    #[error("cannot read the artifact tar of `{artifact}`")]
    ArtifactTar {
        /// The recipe.
        artifact: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An artifact path outside the layout, or an ELF file of another machine.
    #[error(transparent)]
    Artifact(#[from] crate::layer::Error),
    /// An artifact holds an entry that is not a file, directory, symlink or hard link.
    #[error(
        "artifact `{artifact}` holds `{path}` of tar type {kind:?}; only files, directories and links go into an image"
    )]
    ArtifactEntryType {
        /// The recipe.
        artifact: String,
        /// The path in the artifact tar.
        path: String,
        /// The tar entry type byte.
        kind: u8,
    },
    /// A hard link in an artifact points at a file the artifact does not hold (before it).
    #[error(
        "artifact `{artifact}` links `{path}` to `{target}`, which is not a file earlier in the artifact"
    )]
    ArtifactLink {
        /// The recipe.
        artifact: String,
        /// The link's path.
        path: String,
        /// Its target.
        target: String,
    },
    /// A runtime file's path is not a plain absolute path.
    #[error("runtime file path `{path}` must be absolute, without `.` or `..` parts")]
    RuntimePath {
        /// The path.
        path: String,
    },
    /// Writing a layer tar or its gzip stream failed.
    #[error("cannot write the {platform} layer `{layer}`")]
    Layer {
        /// The layer's name (recipe, `azb-overflow` or `runtime`).
        layer: String,
        /// The platform.
        platform: Platform,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the docker-archive failed.
    #[error("cannot write docker-archive `{path}`")]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
