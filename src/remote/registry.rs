//! A remote cache in an OCI registry (`oci://HOST[:PORT]/REPO`) through the `oci-client`
//! crate, whose tokio runtime lives here. Each realisation is a small OCI artifact: a
//! manifest of artifact type [`ARTIFACT_TYPE`] tagged `drv-<DrvHash>` (a derivation names
//! its platform, so amd64 and arm64 never share a tag), whose two layers are the store
//! object (zstd tar) and the image layer blob (gzip tar, the very blob an image carries, so
//! a registry push of the image can mount it), with the signed record in its annotation
//! [`RECORD_ANNOTATION`]. Blobs before the manifest.
//!
//! Loopback registries (`localhost`, `127.*`) are spoken to over plain HTTP, others over
//! HTTPS. Credentials come from `AZB_REGISTRY_USERNAME` and `AZB_REGISTRY_PASSWORD`, else
//! none. Registries cannot refuse a tag overwrite: the manifest is looked up first and an
//! existing one is never replaced.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::{Error, Pushed, Substituter};
use crate::digest::{HashingWriter, Sha256};
use crate::drv::DrvHash;
use crate::fs::{FsError, err};
use crate::store::Realisation;

/// The artifact type of a realisation's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.azb.realisation.v1+json";
/// The manifest annotation holding the signed realisation (JSON).
pub const RECORD_ANNOTATION: &str = "io.azb.realisation";
/// The media type of a store object (zstd tar).
const OBJECT_MEDIA_TYPE: &str = "application/vnd.azb.object.v1.tar+zstd";
/// The media type of a layer blob.
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The empty config every artifact manifest points at.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
/// Chunk size of uploads from disk.
const CHUNK: usize = 4 << 20;

/// A cache in an OCI registry repository.
pub struct Registry {
    url: String,
    registry: String,
    repository: String,
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
}

impl Registry {
    /// Checks the form of `url` (`oci://HOST[:PORT]/REPO`): its registry and repository.
    pub fn check(url: &str) -> Result<(&str, &str), Error> {
        let bad = |why: &str| Error::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| bad("expected oci://HOST/REPO"))?;
        let (registry, repository) = rest
            .split_once('/')
            .filter(|(h, r)| !h.is_empty() && !r.is_empty())
            .ok_or_else(|| bad("expected oci://HOST/REPO"))?;
        // The distribution spec's repository names, checked by hand: oci-spec's reference
        // parser compiles a regular expression that costs tens of milliseconds.
        let component = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component) {
            return Err(bad(
                "the repository must be lowercase letters, digits and . _ - between slashes",
            ));
        }
        let host_ok = registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !host_ok {
            return Err(bad("the registry must be HOST or HOST:PORT"));
        }
        Ok((registry, repository))
    }

    /// Opens `oci://HOST[:PORT]/REPO`.
    pub fn open(url: &str) -> Result<Self, Error> {
        let (registry, repository) = Self::check(url)?;
        let host = registry.split(':').next().unwrap_or(registry);
        let loopback = host == "localhost" || host.starts_with("127.");
        let config = ClientConfig {
            protocol: if loopback {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // A registry that stops answering is given up on, never waited for.
            connect_timeout: Some(Duration::from_secs(3)),
            read_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let auth = match (
            crate::env::string(crate::env::REGISTRY_USERNAME),
            crate::env::string(crate::env::REGISTRY_PASSWORD),
        ) {
            (Some(user), Some(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        let runtime = super::runtime(url)?;
        Ok(Self {
            url: url.to_owned(),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            client: Client::new(config),
            auth,
            runtime,
        })
    }

    fn reference(&self, drv: &DrvHash) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            format!("drv-{drv}"),
        )
    }

    fn remote(&self, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::remote(&self.url, e)
    }

    /// The manifest tagged for `drv`, or `None`.
    fn manifest(&self, drv: &DrvHash) -> Result<Option<OciImageManifest>, Error> {
        let reference = self.reference(drv);
        let pulled = self
            .runtime
            .block_on(self.client.pull_manifest(&reference, &self.auth));
        match pulled {
            Ok((OciManifest::Image(manifest), _)) => Ok(Some(manifest)),
            Ok((OciManifest::ImageIndex(_), _)) => Err(self.remote(std::io::Error::other(
                format!("{reference} is an image index, not an azb realisation"),
            ))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.remote(e)),
        }
    }

    /// Streams the blob `descriptor` names into `out` (the client checks its digest).
    fn download(&self, drv: &DrvHash, media_type: &str, out: &mut dyn Write) -> Result<(), Error> {
        let manifest = self.manifest(drv)?.ok_or_else(|| {
            self.remote(std::io::Error::other(format!(
                "no entry for {drv} any more"
            )))
        })?;
        let descriptor = manifest
            .layers
            .iter()
            .find(|l| l.media_type == media_type)
            .ok_or_else(|| {
                self.remote(std::io::Error::other(format!(
                    "the entry for {drv} has no {media_type} layer"
                )))
            })?
            .clone();
        let reference = self.reference(drv);
        self.runtime.block_on(async {
            let mut stream = self
                .client
                .pull_blob_stream(&reference, &descriptor)
                .await
                .map_err(|e| self.remote(e))?
                .stream;
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk.map_err(|e| self.remote(e))?)
                    .map_err(|e| self.remote(e))?;
            }
            Ok(())
        })
    }

    /// Uploads the file at `path` as a blob with `digest` unless the repository has it.
    fn upload_file(&self, reference: &Reference, path: &Path, digest: &str) -> Result<u64, Error> {
        let file = err::File::open(path).map_err(|e| FsError::new("open", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| FsError::new("stat", path, e))?
            .len();
        self.runtime.block_on(async {
            if self
                .client
                .blob_exists(reference, digest)
                .await
                .map_err(|e| self.remote(e))?
            {
                return Ok(size);
            }
            let chunks = futures_util::stream::unfold(file, |mut file| async move {
                let mut buffer = vec![0u8; CHUNK];
                match file.read(&mut buffer) {
                    Ok(0) => None,
                    Ok(n) => {
                        buffer.truncate(n);
                        Some((Ok(bytes::Bytes::from(buffer)), file))
                    }
                    Err(e) => Some((Err(e.into()), file)),
                }
            });
            self.client
                .push_blob_stream(reference, chunks, digest, Some(size))
                .await
                .map_err(|e| self.remote(e))?;
            Ok(size)
        })
    }
}

/// Whether a registry error says the manifest is not there.
fn not_found(error: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    match error {
        E::ImageManifestNotFoundError(_) => true,
        E::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        E::ServerError { code: 404, .. } => true,
        _ => false,
    }
}

fn sha256_of_file(path: &Path) -> Result<Sha256, Error> {
    let mut file = err::File::open(path).map_err(|e| FsError::new("open", path, e))?;
    let mut hashing = HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut hashing).map_err(|e| FsError::new("read", path, e))?;
    Ok(hashing.finish().1.sha256)
}

impl Substituter for Registry {
    fn url(&self) -> &str {
        &self.url
    }

    fn realisation(&self, drv: &DrvHash) -> Result<Option<Vec<u8>>, Error> {
        let Some(manifest) = self.manifest(drv)? else {
            return Ok(None);
        };
        let record = manifest
            .annotations
            .as_ref()
            .and_then(|a| a.get(RECORD_ANNOTATION))
            .filter(|_| manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE));
        Ok(Some(record.cloned().unwrap_or_default().into_bytes()))
    }

    fn download_object(&self, record: &Realisation, out: &mut dyn Write) -> Result<(), Error> {
        self.download(&record.drv, OBJECT_MEDIA_TYPE, out)
    }

    fn download_layer(&self, record: &Realisation, out: &mut dyn Write) -> Result<(), Error> {
        self.download(&record.drv, LAYER_MEDIA_TYPE, out)
    }

    fn check_create_only(&self) -> Result<(), Error> {
        // Tags cannot be create-only; upload() looks before it writes.
        Ok(())
    }

    fn upload(&self, record: &Realisation, object: &Path, layer: &Path) -> Result<Pushed, Error> {
        if let Some(existing) = self.realisation(&record.drv)? {
            return Ok(Pushed::Present(existing));
        }
        let reference = self.reference(&record.drv);
        self.runtime
            .block_on(
                self.client
                    .auth(&reference, &self.auth, RegistryOperation::Push),
            )
            .map_err(|e| self.remote(e))?;
        let object_digest = format!("sha256:{}", sha256_of_file(object)?);
        let object_size = self.upload_file(&reference, object, &object_digest)?;
        let layer_digest = record.layer.digest.oci_digest().to_string();
        self.upload_file(&reference, layer, &layer_digest)?;
        let empty_digest = format!("sha256:{}", Sha256::of(EMPTY));
        self.runtime
            .block_on(self.client.push_blob(&reference, EMPTY, &empty_digest))
            .map_err(|e| self.remote(e))?;
        let text = serde_json::to_string(record).expect("a realisation serialises");
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned()),
            config: OciDescriptor {
                media_type: EMPTY_MEDIA_TYPE.to_owned(),
                digest: empty_digest,
                size: EMPTY.len() as i64,
                ..Default::default()
            },
            layers: vec![
                OciDescriptor {
                    media_type: OBJECT_MEDIA_TYPE.to_owned(),
                    digest: object_digest,
                    size: object_size as i64,
                    ..Default::default()
                },
                OciDescriptor {
                    media_type: LAYER_MEDIA_TYPE.to_owned(),
                    digest: layer_digest,
                    size: record.layer.size as i64,
                    ..Default::default()
                },
            ],
            subject: None,
            artifact_type: Some(ARTIFACT_TYPE.to_owned()),
            annotations: Some(BTreeMap::from([(RECORD_ANNOTATION.to_owned(), text)])),
        };
        self.runtime
            .block_on(
                self.client
                    .push_manifest(&reference, &OciManifest::Image(manifest)),
            )
            .map_err(|e| self.remote(e))?;
        Ok(Pushed::Uploaded)
    }
}

/// What pushing an image did with its blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImagePush {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository of the registry (the cache's).
    pub mounted: usize,
    /// Blobs the repository had.
    pub present: usize,
}

/// A descriptor of an OCI layout's document: media type, digest, size.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The parts of an index or manifest a push walks.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    manifests: Vec<Entry>,
    config: Option<Entry>,
    #[serde(default)]
    layers: Vec<Entry>,
}

impl Registry {
    /// Pushes the image the OCI layout `layout` names `ref_name` (an index or a manifest)
    /// to this registry's repository under each of `tags`: blobs first (skipped when the
    /// repository has them, else mounted from a repository of `mount_from` on the same
    /// registry, else uploaded), then manifests, then the index, byte for byte as in the
    /// layout, so the digests stay; then the artifacts that refer to it (its SBOMs) with
    /// their referrers indexes under the fallback tags.
    pub fn push_image(
        &self,
        layout: &Path,
        ref_name: &str,
        tags: &[String],
        mount_from: &[String],
    ) -> Result<ImagePush, Error> {
        let blob = |digest: &str| -> std::path::PathBuf {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let read = |path: &Path| -> Result<Vec<u8>, Error> {
            err::read(path).map_err(|e| FsError::new("read", path, e).into())
        };
        let index: Document = serde_json::from_slice(&read(&layout.join("index.json"))?)
            .map_err(|e| self.remote(e))?;
        let top = index
            .manifests
            .iter()
            .find(|m| {
                m.annotations
                    .get("org.opencontainers.image.ref.name")
                    .map(String::as_str)
                    == Some(ref_name)
            })
            .ok_or_else(|| {
                self.remote(std::io::Error::other(format!(
                    "the layout {} has no image named {ref_name}",
                    layout.display()
                )))
            })?;
        let reference = Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tags.first().cloned().unwrap_or_else(|| "latest".to_owned()),
        );
        self.runtime
            .block_on(
                self.client
                    .auth(&reference, &self.auth, RegistryOperation::Push),
            )
            .map_err(|e| self.remote(e))?;
        let mut report = ImagePush::default();
        // Manifests below the top (one per platform when it is an index), then the top.
        let mut documents = Vec::new();
        if top.media_type.ends_with("image.index.v1+json") {
            let nested: Document =
                serde_json::from_slice(&read(&blob(&top.digest))?).map_err(|e| self.remote(e))?;
            documents.extend(nested.manifests);
        }
        for manifest in &documents {
            self.push_manifest_tree(&reference, &blob, manifest, mount_from, &mut report)?;
        }
        let top_bytes = read(&blob(&top.digest))?;
        if top.media_type.ends_with("image.manifest.v1+json") {
            self.push_manifest_tree(&reference, &blob, top, mount_from, &mut report)?;
        }
        for tag in tags {
            let tagged =
                Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.clone());
            self.push_document(&tagged, top_bytes.clone(), &top.media_type)?;
        }
        // What refers to the image (each platform's SBOM): the artifacts, then their
        // referrers index under the fallback tag `sha256-<hex>`, as the layout has it, so
        // registries without the referrers API list them too.
        let referrers = index.manifests.iter().filter(|m| {
            m.annotations
                .get("org.opencontainers.image.ref.name")
                .is_some_and(|name| name.starts_with("sha256-"))
        });
        for listed in referrers {
            let bytes = read(&blob(&listed.digest))?;
            let artifacts: Document = serde_json::from_slice(&bytes).map_err(|e| self.remote(e))?;
            for artifact in &artifacts.manifests {
                self.push_manifest_tree(&reference, &blob, artifact, mount_from, &mut report)?;
            }
            let tag = listed.annotations["org.opencontainers.image.ref.name"].clone();
            let tagged = Reference::with_tag(self.registry.clone(), self.repository.clone(), tag);
            self.push_document(&tagged, bytes, &listed.media_type)?;
        }
        Ok(report)
    }

    /// Pushes a manifest's config and layers, then the manifest by digest.
    fn push_manifest_tree(
        &self,
        reference: &Reference,
        blob: &dyn Fn(&str) -> std::path::PathBuf,
        manifest: &Entry,
        mount_from: &[String],
        report: &mut ImagePush,
    ) -> Result<(), Error> {
        let path = blob(&manifest.digest);
        let bytes = err::read(&path).map_err(|e| FsError::new("read", &path, e))?;
        let document: Document = serde_json::from_slice(&bytes).map_err(|e| self.remote(e))?;
        for entry in document.config.iter().chain(&document.layers) {
            self.put_blob(
                reference,
                &blob(&entry.digest),
                &entry.digest,
                mount_from,
                report,
            )?;
        }
        let by_digest = reference.clone_with_digest(manifest.digest.clone());
        self.push_document(&by_digest, bytes, &manifest.media_type)
    }

    /// One blob: there already, mounted, or uploaded.
    fn put_blob(
        &self,
        reference: &Reference,
        path: &Path,
        digest: &str,
        mount_from: &[String],
        report: &mut ImagePush,
    ) -> Result<(), Error> {
        let exists = self
            .runtime
            .block_on(self.client.blob_exists(reference, digest))
            .map_err(|e| self.remote(e))?;
        if exists {
            report.present += 1;
            return Ok(());
        }
        for repository in mount_from {
            let source = Reference::with_tag(
                self.registry.clone(),
                repository.clone(),
                "latest".to_owned(),
            );
            let has = self
                .runtime
                .block_on(self.client.blob_exists(&source, digest))
                .unwrap_or(false);
            // A registry answers a mount it cannot do by opening an upload; then upload.
            if has
                && self
                    .runtime
                    .block_on(self.client.mount_blob(reference, &source, digest))
                    .is_ok()
            {
                report.mounted += 1;
                return Ok(());
            }
        }
        self.upload_file(reference, path, digest)?;
        report.uploaded += 1;
        Ok(())
    }

    fn push_document(
        &self,
        reference: &Reference,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), Error> {
        let content_type =
            object_store::HeaderValue::from_str(media_type).map_err(|e| self.remote(e))?;
        self.runtime
            .block_on(
                self.client
                    .push_manifest_raw(reference, bytes, content_type),
            )
            .map_err(|e| self.remote(e))?;
        Ok(())
    }

    /// The repository part of the URL.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The registry part of the URL (`HOST[:PORT]`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
}

/// Manifest media types a base pull accepts (OCI and Docker's).
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The parts of an index entry a base pull reads.
#[derive(Debug, serde::Deserialize)]
struct Listed {
    digest: String,
    platform: Option<ListedPlatform>,
}

#[derive(Debug, serde::Deserialize)]
struct ListedPlatform {
    os: String,
    architecture: String,
}

/// Pulls the image `name@sha256:<digest>` (`name`: `HOST[:PORT]/REPO`) into a new OCI
/// layout at `dest`, named `base`: the index or manifest byte for byte, and of an index the
/// linux/amd64 and linux/arm64 manifests with their blobs (others are left out). Every
/// document and blob is checked against its digest while it streams. Written beside
/// `dest` and renamed into place, so a layout at `dest` is always whole.
pub fn pull_base(name: &str, digest: &str, dest: &Path) -> Result<(), Error> {
    let registry = Registry::open(&format!("oci://{name}"))?;
    let parent = dest.parent().expect("a base layout has a parent directory");
    err::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    let work = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(parent)
        .map_err(|e| FsError::new("create a directory in", parent, e))?;
    let blobs = work.path().join("blobs/sha256");
    err::create_dir_all(&blobs).map_err(|e| FsError::new("create directory", &blobs, e))?;
    let reference = Reference::with_digest(
        registry.registry.clone(),
        registry.repository.clone(),
        format!("sha256:{digest}"),
    );
    let document = |reference: &Reference| -> Result<(Vec<u8>, String), Error> {
        let (bytes, found) = registry
            .runtime
            .block_on(
                registry
                    .client
                    .pull_manifest_raw(reference, &registry.auth, &MANIFEST_TYPES),
            )
            .map_err(|e| registry.remote(e))?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_else(|| MANIFEST_TYPES[1].to_owned());
        let path = blobs.join(found.trim_start_matches("sha256:"));
        err::write(&path, &bytes).map_err(|e| FsError::new("write", &path, e))?;
        Ok((bytes.to_vec(), media_type))
    };
    let blob = |reference: &Reference, entry: &Entry| -> Result<(), Error> {
        let path = blobs.join(entry.digest.trim_start_matches("sha256:"));
        if path.is_file() {
            return Ok(());
        }
        let mut file = err::File::create(&path).map_err(|e| FsError::new("create", &path, e))?;
        registry.runtime.block_on(async {
            let mut stream = registry
                .client
                .pull_blob_stream(reference, entry.digest.as_str())
                .await
                .map_err(|e| registry.remote(e))?
                .stream;
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk.map_err(|e| registry.remote(e))?)
                    .map_err(|e| FsError::new("write", &path, e))?;
            }
            Ok::<(), Error>(())
        })
    };
    let (top, top_type) = document(&reference)?;
    let mut manifests = Vec::new();
    if top_type.contains("index") || top_type.contains("list") {
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<Listed>,
        }
        let index: Index = serde_json::from_slice(&top).map_err(|e| registry.remote(e))?;
        for listed in index.manifests {
            let wanted = listed.platform.as_ref().is_some_and(|p| {
                p.os == "linux" && matches!(p.architecture.as_str(), "amd64" | "arm64")
            });
            if wanted {
                let child = reference.clone_with_digest(listed.digest.clone());
                manifests.push(document(&child)?.0);
            }
        }
    } else {
        manifests.push(top.clone());
    }
    for manifest in &manifests {
        let manifest: Document =
            serde_json::from_slice(manifest).map_err(|e| registry.remote(e))?;
        for entry in manifest.config.iter().chain(&manifest.layers) {
            blob(&reference, entry)?;
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": top_type,
            "digest": format!("sha256:{digest}"),
            "size": top.len(),
            "annotations": {"org.opencontainers.image.ref.name": "base"},
        }],
    });
    for (file, bytes) in [
        ("index.json", serde_json::to_vec(&index).expect("json")),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ] {
        let path = work.path().join(file);
        err::write(&path, bytes).map_err(|e| FsError::new("write", &path, e))?;
    }
    let kept = work.keep();
    match err::rename(&kept, dest) {
        Ok(()) => Ok(()),
        // Another process pulled it meanwhile: theirs is as good.
        Err(_) if dest.join("index.json").is_file() => {
            let _ = err::remove_dir_all(&kept);
            Ok(())
        }
        Err(e) => Err(FsError::new("move the pulled base to", dest, e).into()),
    }
}
