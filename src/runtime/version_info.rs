//! /etc/postgresql/version-info.{txt,json}: exactly what went into an image; and the
//! image's creation time, tags and labels, which follow from the same pins.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::RuntimeFile;
use crate::recipe::{ImageDef, Platform, Recipe};
use crate::store::Realisation;

/// One extension's line in version-info.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionInfo {
    /// Recipe name.
    pub name: String,
    /// Upstream version.
    pub version: String,
    /// Extension, tool or builtin.
    pub kind: String,
    /// Pinned commit.
    pub commit: String,
    /// Tag label, if any.
    pub tag: Option<String>,
    /// The derivation built.
    pub derivation: String,
    /// The artifact object.
    pub object: String,
}

/// Everything version-info says about one platform's image.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Image repository name.
    pub image: String,
    /// Image flavor (TYPE of the tag).
    pub flavor: String,
    /// PostgreSQL version.
    pub postgresql: String,
    /// Platform.
    pub platform: String,
    /// Image creation time: the newest pinned commit's time.
    pub created: String,
    /// Extensions by name.
    pub extensions: Vec<ExtensionInfo>,
}

impl VersionInfo {
    /// Describes an image made of `parts` (recipe and its realisation, in image order).
    pub fn new(
        image: &ImageDef,
        platform: Platform,
        created: i64,
        parts: &[(&Recipe, &Realisation)],
    ) -> Self {
        let mut extensions: Vec<ExtensionInfo> = parts
            .iter()
            .map(|(recipe, real)| ExtensionInfo {
                name: recipe.name.to_string(),
                version: recipe.version.clone(),
                kind: recipe.kind.as_str().to_owned(),
                commit: recipe.commit().map(|c| c.to_string()).unwrap_or_default(),
                tag: recipe.tag().map(str::to_owned),
                derivation: real.drv.to_string(),
                object: real.object.to_string(),
            })
            .collect();
        extensions.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            image: image.name.clone(),
            flavor: image.flavor.clone(),
            postgresql: image.pg_version.clone(),
            platform: platform.to_string(),
            created: rfc3339(created),
            extensions,
        }
    }

    /// The files: version-info.json (canonical JSON) and version-info.txt (a table).
    pub fn files(&self) -> Vec<RuntimeFile> {
        let mut json = serde_json::to_vec_pretty(self).expect("version info serialises");
        json.push(b'\n');
        let mut text = format!(
            "image: {}\nflavor: {}\npostgresql: {}\nplatform: {}\ncreated: {}\n\n",
            self.image, self.flavor, self.postgresql, self.platform, self.created
        );
        let width = self
            .extensions
            .iter()
            .map(|e| e.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        for e in &self.extensions {
            text.push_str(&format!(
                "{:width$}  {:10}  {}  {}\n",
                e.name,
                e.version,
                e.commit.get(..12).unwrap_or("-"),
                e.tag.as_deref().unwrap_or("-")
            ));
        }
        vec![
            RuntimeFile {
                path: "/etc/postgresql/version-info.json".into(),
                contents: json,
                mode: 0o644,
            },
            RuntimeFile {
                path: "/etc/postgresql/version-info.txt".into(),
                contents: text.into_bytes(),
                mode: 0o644,
            },
        ]
    }
}

/// The image's creation time: the newest source time among its parts (0 when empty), so
/// the same pins give the same image on any day.
pub fn created(parts: &[(&Recipe, &Realisation)]) -> i64 {
    parts.iter().map(|(_, r)| r.source_time).max().unwrap_or(0)
}

/// RFC 3339 UTC text of a unix time, to the second.
pub fn rfc3339(unix: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The image tags: `MM.mm-YYYYMMDDHHmm-TYPE` and the major version alone.
pub fn tags(image: &ImageDef, created: i64) -> Vec<String> {
    let stamp: String = rfc3339(created)
        .chars()
        .filter(char::is_ascii_digit)
        .take(12)
        .collect();
    vec![
        format!("{}-{stamp}-{}", image.pg_version, image.flavor),
        image.pg_major.to_string(),
    ]
}

/// Labels for the image config.
pub fn labels(image: &ImageDef, created: i64) -> BTreeMap<String, String> {
    [
        ("org.opencontainers.image.title", image.name.clone()),
        (
            "org.opencontainers.image.version",
            tags(image, created)[0].clone(),
        ),
        ("org.opencontainers.image.created", rfc3339(created)),
        ("io.azb.postgresql.version", image.pg_version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_tags_are_fixed_text() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let image: ImageDef = ron::from_str(
            r#"(name: "azb/postgres", flavor: "example", pg_major: 18, pg_version: "18.6", platforms: {})"#,
        )
        .unwrap();
        assert_eq!(
            tags(&image, 1_700_000_000),
            ["18.6-202311142213-example", "18"]
        );
    }
}
