//! A companion image (PgBouncer, the metrics exporter): the base, exactly its Debian
//! packages, its files and run settings; tagged with its main package's Debian version and
//! `latest`; created when its base was, so the same lock and files give the same digest.

use std::collections::BTreeMap;

use super::{Error, base, lock, packages};
use crate::image::{ImageRequest, PlatformImage, RunConfig, RuntimeFile};
use crate::recipe::{Companion, Platform, Project};
use crate::store::Store;

/// The tag a Debian version gives (`1.18.0-1+deb12u1` → `1.18.0-1-deb12u1`): characters a
/// tag cannot hold become `-`.
fn version_tag(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The request for companion image `def` of `project` on `platforms`.
pub(super) fn request(
    store: &Store,
    project: &Project,
    def: &Companion,
    platforms: &[Platform],
) -> Result<ImageRequest, Error> {
    let files = def
        .files
        .iter()
        .map(|(path, source)| {
            let from = project.path(source);
            let read = || {
                use std::os::unix::fs::PermissionsExt;
                let executable = crate::fs::err::metadata(&from)?.permissions().mode() & 0o111;
                Ok((crate::fs::err::read(&from)?, executable != 0))
            };
            let (contents, executable) = read().map_err(|source| Error::File {
                path: from.clone(),
                source,
            })?;
            // Git keeps only the execute bit, so the mode follows from it alone.
            Ok(RuntimeFile {
                path: path.clone(),
                contents,
                mode: if executable { 0o755 } else { 0o644 },
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut version = None;
    let mut images = Vec::new();
    for &platform in platforms {
        let (base_dir, base_ref) = base(store, project, platform)?;
        let created =
            crate::image::base_created(&base_dir, base_ref.as_deref(), platform)?.unwrap_or(0);
        let main =
            lock(project)?.exact_packages(platform, std::slice::from_ref(&def.version_from))?;
        version.get_or_insert_with(|| version_tag(&main[0].version));
        images.push(PlatformImage {
            platform,
            base: base_dir,
            base_ref,
            pg_major: project.image.pg_major,
            artifacts: Vec::new(),
            packages: packages(store, project, &def.packages, platform, true)?,
            packages_exact: true,
            sbom: None,
            runtime_files: files.clone(),
            created,
            labels: labels(project, version.as_deref().unwrap_or_default()),
            run: RunConfig {
                entrypoint: Some(def.entrypoint.clone()),
                cmd: Some(def.cmd.clone()),
                user: Some(def.user.clone()),
                env: def.env.clone(),
                exposed_ports: Some(def.exposed_ports.clone()),
                stop_signal: def.stop_signal.clone(),
                // The base's data volume is PostgreSQL's, not this program's.
                volumes: Some(Vec::new()),
            },
        });
    }
    let version = version.unwrap_or_default();
    Ok(ImageRequest {
        name: project.image.name.clone(),
        tags: vec![version, "latest".to_owned()],
        platforms: images,
        memo: Some(store.layout().memo()),
    })
}

/// The image's labels: its title and version.
fn labels(project: &Project, version: &str) -> BTreeMap<String, String> {
    [
        ("org.opencontainers.image.title", project.image.name.clone()),
        ("org.opencontainers.image.version", version.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions_become_valid_tags() {
        assert_eq!(version_tag("1.18.0-1+deb12u1"), "1.18.0-1-deb12u1");
        assert_eq!(version_tag("1:2.3~rc1"), "1-2.3-rc1");
        assert_eq!(version_tag("0.11.1-3+b5"), "0.11.1-3-b5");
    }
}
