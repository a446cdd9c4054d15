//! Extension images (`azb build --output extensions:DIR`): for each extension of the
//! build, its artifact on every platform, its tag and its annotations.
//!
//! Choices:
//! - Extensions only: a tool (pgbadger, pgbackrest) is not mounted into a server, and a
//!   builtin has no artifact.
//! - Tag `<pg major>-<version>-<distribution>` (`18-0.8.1-bookworm`), the scheme
//!   CloudNativePG's own extension images use; a character a tag cannot hold becomes `_`;
//!   a recipe without a version (pinned to an untagged commit) puts the commit's first 12
//!   hex digits in its place.
//!   The distribution is builders.lock's (the builders' and the packages'), else the
//!   builders' default.
//! - Annotations: the standard `org.opencontainers.image.*` keys, from the recipe (title,
//!   description, version, source, revision = the pinned commit, licences as the SBOM has
//!   them) and `created` = the artifact's source time, so they change only with it.
//! - The recipe's `runtime_packages`, as builders.lock pins them, give the image's
//!   `system/` libraries (see the image module); the PostgreSQL image's base says which
//!   it already has.

use std::collections::BTreeMap;

use super::Error;
use crate::build::Outcome;
use crate::drv::Plan;
use crate::graph::Graph;
use crate::image::{ExtensionImage, ExtensionPlatform};
use crate::recipe::{Platform, Project, RecipeKind};
use crate::store::Store;

/// The extension images of the build that realised `plan`, in dependency order.
pub fn extension_images(
    store: &Store,
    project: &Project,
    graph: &Graph<'_>,
    plan: &Plan<'_>,
    outcome: &Outcome,
    platforms: &[Platform],
) -> Result<Vec<ExtensionImage>, Error> {
    let distribution = project
        .lock
        .as_ref()
        .map_or(crate::build::DISTRIBUTION, |lock| {
            lock.distribution.as_str()
        });
    // Each platform's base, read once for every extension.
    let bases = platforms
        .iter()
        .map(|&platform| Ok((platform, super::base(store, project, platform)?)))
        .collect::<Result<std::collections::BTreeMap<_, _>, Error>>()?;
    let mut images = Vec::new();
    for loaded in &graph.order {
        let recipe = &loaded.recipe;
        if recipe.kind != RecipeKind::Extension {
            continue;
        }
        let mut parts = Vec::new();
        for &platform in platforms {
            let Some(planned) = plan
                .for_platform(platform)
                .find(|p| p.drv.name == recipe.name)
            else {
                continue;
            };
            let (base, base_ref) = bases[&platform].clone();
            parts.push(ExtensionPlatform {
                platform,
                artifact: super::artifact_layer(store, &outcome.artifacts[&planned.hash], false),
                packages: super::packages(
                    store,
                    project,
                    &recipe.runtime_packages,
                    platform,
                    false,
                )?,
                base,
                base_ref,
            });
        }
        let Some(first) = parts.first().map(|p| &p.artifact) else {
            continue;
        };
        let license = match &recipe.license {
            Some(license) => Some(license.clone()),
            None => {
                let tar =
                    crate::store::read_object(&first.object).map_err(|source| Error::Object {
                        name: recipe.name.to_string(),
                        source,
                    })?;
                crate::runtime::artifact_license(recipe.name.as_str(), tar)
            }
        };
        let created = parts.iter().map(|p| p.artifact.mtime).max().unwrap_or(0);
        let mut annotations = BTreeMap::from([
            ("title", recipe.name.to_string()),
            ("description", recipe.description.clone()),
            ("version", recipe.version.clone()),
            ("source", recipe.url().to_owned()),
            ("created", crate::runtime::rfc3339(created)),
        ]);
        if let Some(commit) = recipe.commit() {
            annotations.insert("revision", commit.to_string());
        }
        if let Some(license) = license {
            annotations.insert("licenses", license);
        }
        images.push(ExtensionImage {
            name: recipe.name.to_string(),
            tag: tag(
                project.image.pg_major,
                &version_or_commit(&recipe.version, recipe.commit()),
                distribution,
            ),
            annotations: annotations
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(key, value)| (format!("org.opencontainers.image.{key}"), value))
                .collect(),
            platforms: parts,
        });
    }
    Ok(images)
}

/// The version a tag names: the recipe's, else (a recipe pinned to an untagged commit
/// may have none) the commit's first 12 hex digits.
fn version_or_commit(version: &str, commit: Option<crate::recipe::CommitSha>) -> String {
    match (version.is_empty(), commit) {
        (true, Some(commit)) => commit.to_string()[..12].to_owned(),
        _ => version.to_owned(),
    }
}

/// `<pg major>-<version>-<distribution>`, every character a tag cannot hold as `_`.
fn tag(pg_major: u32, version: &str, distribution: &str) -> String {
    format!("{pg_major}-{version}-{distribution}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tag_holds_only_what_a_tag_may() {
        assert_eq!(super::tag(18, "0.8.1", "bookworm"), "18-0.8.1-bookworm");
        assert_eq!(
            super::tag(18, "2.0+git 1", "bookworm"),
            "18-2.0_git_1-bookworm"
        );
        // pg_hashids' recipe has no version: the commit stands in.
        let commit = "8c404dd86408f3a987a3ff6825ac7e42bd618b98".parse().ok();
        assert_eq!(super::version_or_commit("", commit), "8c404dd86408");
        assert_eq!(super::version_or_commit("1.3", commit), "1.3");
    }
}
