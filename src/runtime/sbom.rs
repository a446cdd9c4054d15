//! The software bill of materials, CycloneDX 1.5 JSON. Two views of one document, both
//! from the recipes:
//!
//! - the source SBOM (`azb gen` writes stacks/runtime/sbom.cdx.json, lifecycle
//!   `pre-build`): each component with its purl, pinned commit, tag, build kind and the
//!   licence its recipe declares;
//! - the image SBOM (/etc/postgresql/sbom.cdx.json in each platform's runtime layer,
//!   lifecycle `build`): the same, plus the derivation and artifact object each component
//!   was built as, and the licence found in the artifact's licence files (copied from the
//!   source tree) when the recipe declares none.
//!
//! The JSON is canonical: keys sorted, components by name, no timestamp but the image's
//! fixed creation time, no random serial number. Owns that content only.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Value, json};

use super::{RuntimeFile, rfc3339};
use crate::digest::ObjectHash;
use crate::drv::DrvHash;
use crate::recipe::{
    ImageDef, Platform, Recipe, RecipeKind, RecipeName, Source, is_recognised_id, license_of_texts,
};

/// Where the image carries its SBOM.
pub const SBOM_PATH: &str = "/etc/postgresql/sbom.cdx.json";

/// What the build adds to one component of the image SBOM.
#[derive(Debug, Clone)]
pub struct BuiltComponent {
    /// The derivation built.
    pub derivation: DrvHash,
    /// The artifact object.
    pub object: ObjectHash,
    /// The licence the artifact's licence files declare, if recognised.
    pub license: Option<String>,
}

/// One platform's build, for the image SBOM.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// The platform.
    pub platform: Platform,
    /// The image's creation time (unix seconds).
    pub created: i64,
    /// The image's version tag.
    pub tag: String,
    /// Built components by recipe name (builtins have none).
    pub components: BTreeMap<RecipeName, BuiltComponent>,
}

/// The SBOM of an image made of `recipes`: the source SBOM without `build`, the image
/// SBOM with it. Pretty JSON with a final newline.
pub fn sbom_json(image: &ImageDef, recipes: &[&Recipe], build: Option<&ImageBuild>) -> String {
    let mut sorted: Vec<&Recipe> = recipes.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = sorted.iter().map(|r| r.name.as_str()).collect();
    let components: Vec<Value> = sorted
        .iter()
        .map(|r| component(r, build.and_then(|b| b.components.get(&r.name))))
        .collect();
    let mut dependencies = vec![json!({ "ref": "image", "dependsOn": names })];
    dependencies.extend(sorted.iter().map(|r| {
        let mut on: Vec<&str> = r
            .depends
            .iter()
            .map(|d| d.as_str())
            .filter(|d| names.contains(d))
            .collect();
        on.sort_unstable();
        json!({ "ref": r.name.as_str(), "dependsOn": on })
    }));
    let mut metadata = json!({
        "lifecycles": [{ "phase": if build.is_some() { "build" } else { "pre-build" } }],
        "tools": { "components": [{
            "type": "application",
            "name": "azb",
            "version": env!("CARGO_PKG_VERSION"),
        }] },
        "component": {
            "type": "container",
            "bom-ref": "image",
            "name": image.name,
            "version": build.map_or(image.pg_version.clone(), |b| b.tag.clone()),
            "properties": [
                { "name": "azb:flavor", "value": image.flavor },
                { "name": "azb:postgresql", "value": image.pg_version },
            ],
        },
    });
    if let Some(build) = build {
        metadata["timestamp"] = json!(rfc3339(build.created));
        metadata["component"]["properties"]
            .as_array_mut()
            .expect("properties is a list")
            .push(json!({ "name": "azb:platform", "value": build.platform.to_string() }));
    }
    let document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    });
    let mut text = serde_json::to_string_pretty(&document).expect("an SBOM serialises");
    text.push('\n');
    text
}

/// The image SBOM as a runtime-layer file.
pub fn sbom_file(image: &ImageDef, recipes: &[&Recipe], build: &ImageBuild) -> RuntimeFile {
    RuntimeFile {
        path: SBOM_PATH.to_owned(),
        contents: sbom_json(image, recipes, Some(build)).into_bytes(),
        mode: 0o644,
    }
}

/// The licence an artifact's `licenses/<name>/` files declare (None when there are none or
/// none is recognised). `tar` reads the artifact's uncompressed tar.
pub fn artifact_license(name: &str, tar: impl std::io::Read) -> Option<String> {
    let prefix = format!("licenses/{name}/");
    let mut texts = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().ok()? {
        let Ok(mut entry) = entry else { continue };
        let inside = entry.path().ok().is_some_and(|p| {
            p.to_string_lossy()
                .trim_start_matches("./")
                .starts_with(&prefix)
        });
        let mut text = String::new();
        if inside
            && entry.header().entry_type().is_file()
            && entry.read_to_string(&mut text).is_ok()
        {
            texts.push(text);
        }
    }
    license_of_texts(texts.iter().map(String::as_str))
}

fn component(recipe: &Recipe, built: Option<&BuiltComponent>) -> Value {
    let name = recipe.name.as_str();
    let mut properties = vec![
        json!({ "name": "azb:kind", "value": recipe.kind.as_str() }),
        json!({ "name": "azb:build", "value": recipe.build.kind_name() }),
    ];
    let mut value = json!({
        "type": if recipe.kind == RecipeKind::Tool { "application" } else { "library" },
        "bom-ref": name,
        "name": name,
    });
    if !recipe.version.is_empty() {
        value["version"] = json!(recipe.version);
    }
    if !recipe.description.is_empty() {
        value["description"] = json!(recipe.description);
    }
    if let Source::Git { url, commit, tag } = &recipe.source {
        value["purl"] = json!(purl(name, &recipe.version, url, &commit.to_string()));
        value["externalReferences"] = json!([{ "type": "vcs", "url": url }]);
        properties.push(json!({ "name": "azb:commit", "value": commit.to_string() }));
        if let Some(tag) = tag {
            properties.push(json!({ "name": "azb:tag", "value": tag }));
        }
    } else {
        properties.push(json!({ "name": "azb:ships-with", "value": "postgresql" }));
    }
    let license = recipe
        .license
        .clone()
        .or_else(|| built.and_then(|b| b.license.clone()));
    if let Some(license) = license {
        value["licenses"] = json!([license_choice(&license)]);
    }
    if let Some(built) = built {
        properties.push(json!({ "name": "azb:derivation", "value": built.derivation.to_string() }));
        properties.push(json!({ "name": "azb:object", "value": built.object.to_string() }));
    }
    value["properties"] = json!(properties);
    value
}

/// A licence for CycloneDX: an id azb recognises as `license.id`, any other single name
/// as `license.name`, anything compound as an `expression`.
fn license_choice(license: &str) -> Value {
    if license.contains(' ') || license.contains('(') {
        json!({ "expression": license })
    } else if is_recognised_id(license) {
        json!({ "license": { "id": license } })
    } else {
        json!({ "license": { "name": license } })
    }
}

/// The package URL of a git source: `pkg:github/owner/repo@commit` for GitHub, else
/// `pkg:generic/name@version?vcs_url=git+URL@commit` (percent-encoded).
fn purl(name: &str, version: &str, url: &str, commit: &str) -> String {
    let github = url
        .strip_prefix("https://github.com/")
        .map(|rest| rest.trim_end_matches('/').trim_end_matches(".git"))
        .filter(|rest| rest.split('/').count() == 2 && !rest.contains(['?', '#', '@']));
    match github {
        Some(path) => format!("pkg:github/{}@{commit}", path.to_lowercase()),
        None => {
            let version = if version.is_empty() { commit } else { version };
            format!(
                "pkg:generic/{name}@{}?vcs_url={}",
                percent_encode(version),
                percent_encode(&format!("git+{url}@{commit}"))
            )
        }
    }
}

/// purl's percent-encoding: everything but unreserved characters, `:` and `/`.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_name_the_pinned_commit() {
        let commit = "cab9da72c04353f143bb06b42ab70a403daac64a";
        assert_eq!(
            purl(
                "vector",
                "0.8.2",
                "https://github.com/pgvector/pgvector",
                commit
            ),
            format!("pkg:github/pgvector/pgvector@{commit}")
        );
        assert_eq!(
            purl("x", "1.0 rc", "file:///srv/git/x repo", commit),
            format!("pkg:generic/x@1.0%20rc?vcs_url=git%2Bfile:///srv/git/x%20repo%40{commit}")
        );
    }

    #[test]
    fn licences_are_ids_names_or_expressions() {
        assert_eq!(
            license_choice("PostgreSQL"),
            json!({ "license": { "id": "PostgreSQL" } })
        );
        assert_eq!(
            license_choice("LicenseRef-Timescale"),
            json!({ "license": { "name": "LicenseRef-Timescale" } })
        );
        assert_eq!(
            license_choice("MIT OR Apache-2.0"),
            json!({ "expression": "MIT OR Apache-2.0" })
        );
    }

    #[test]
    fn artifact_licences_come_from_its_own_licence_files() {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, text) in [
            (
                "licenses/x/LICENSE",
                "Permission is hereby granted, free of charge, to any person obtaining a copy",
            ),
            ("licenses/y/LICENSE", "Apache License\nVersion 2.0"),
            ("share/extension/x.control", "comment = 'x'"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .unwrap();
        }
        let tar = builder.into_inner().unwrap();
        assert_eq!(artifact_license("x", &tar[..]).as_deref(), Some("MIT"));
        assert_eq!(artifact_license("z", &tar[..]), None);
    }
}
