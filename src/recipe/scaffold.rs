//! `azb recipe add`'s first draft of a recipe: what a source tree is (build kind, extension
//! or tool, version, description, licence), read from the files at its top, and the RON
//! text of a recipe pinning it.
//!
//! Owns that detection and rendering. Reads the exported tree it is given; never fetches,
//! never writes the recipe file.

use std::path::Path;

use super::{Build, CommitSha, RecipeKind, RecipeName, license_of_tree};
use crate::fs::{FsError, err, sorted_entries};

/// A tree whose build kind azb cannot tell.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// No build system azb knows is at the top of the tree.
    #[error(
        "cannot tell how to build `{name}`: the top of its tree has no Cargo.toml with pgrx, meson.build, CMakeLists.txt, configure(.ac), Makefile or .control/.sql files"
    )]
    UnknownKind {
        /// The recipe.
        name: RecipeName,
    },
    /// A file could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What the tree says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// Extension when the tree has a `.control` file, else Tool.
    pub kind: RecipeKind,
    /// The build kind.
    pub build: Build,
    /// `default_version` of the control file, else the manifest's version.
    pub version: Option<String>,
    /// The control file's `comment`, else the manifest's description.
    pub description: Option<String>,
    /// The licence the tree declares.
    pub license: Option<String>,
}

/// A file at the top of the tree, as text (None when absent).
fn read(dir: &Path, name: &str) -> Result<Option<String>, FsError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = err::read(&path).map_err(|e| FsError::new("read", &path, e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `key = 'value'` (or `"value"`, or bare) in a control file.
fn control_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(v);
        (!v.is_empty() && !v.contains('@')).then(|| v.replace("''", "'"))
    })
}

/// The pgrx version a Cargo.toml depends on (`pgrx = "=0.16.1"` or a table), without
/// the requirement operator.
fn pgrx_version(manifest: &toml::Table) -> Option<String> {
    let dependency = manifest.get("dependencies")?.get("pgrx")?;
    let requirement = match dependency {
        toml::Value::String(text) => text.as_str(),
        toml::Value::Table(table) => table.get("version")?.as_str()?,
        _ => return None,
    };
    let version = requirement.trim_start_matches(['=', '^', '~', ' ']);
    (!version.is_empty()).then(|| version.to_owned())
}

/// Reads the top of `tree` and tells what it is.
pub fn detect(name: &RecipeName, tree: &Path) -> Result<Detected, ScaffoldError> {
    let files: Vec<String> = sorted_entries(tree)?
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let has = |file: &str| files.iter().any(|f| f == file);
    let control_name = files
        .iter()
        .find(|f| f.as_str() == format!("{name}.control"))
        .or_else(|| files.iter().find(|f| f.ends_with(".control")))
        .or_else(|| files.iter().find(|f| f.ends_with(".control.in")))
        .cloned();
    let control = match &control_name {
        Some(file) => read(tree, file)?,
        None => None,
    };
    let manifest: Option<toml::Table> = read(tree, "Cargo.toml")?
        .as_deref()
        .and_then(|t| toml::from_str(t).ok());
    let package = |key: &str| {
        manifest
            .as_ref()
            .and_then(|m| m.get("package")?.get(key)?.as_str().map(str::to_owned))
    };
    let makefile = read(tree, "Makefile")?;
    let build = if let Some(pgrx) = manifest.as_ref().and_then(pgrx_version) {
        let pg18 = manifest
            .as_ref()
            .and_then(|m| m.get("features")?.get("pg18"))
            .is_some();
        Build::CargoPgrx {
            pgrx,
            features: if pg18 {
                vec!["pg18".into()]
            } else {
                Vec::new()
            },
            no_default_features: pg18,
        }
    } else if has("meson.build") {
        Build::Meson { flags: Vec::new() }
    } else if has("CMakeLists.txt") {
        Build::Cmake { flags: Vec::new() }
    } else if has("configure") || has("configure.ac") {
        Build::Autotools { flags: Vec::new() }
    } else if let Some(makefile) = &makefile {
        if makefile.contains("PGXS") {
            Build::Pgxs { flags: Vec::new() }
        } else {
            Build::Make { flags: Vec::new() }
        }
    } else if control.is_some() && files.iter().any(|f| f.ends_with(".sql")) {
        Build::Sql
    } else {
        return Err(ScaffoldError::UnknownKind { name: name.clone() });
    };
    Ok(Detected {
        kind: if control_name.is_some() {
            RecipeKind::Extension
        } else {
            RecipeKind::Tool
        },
        build,
        version: control
            .as_deref()
            .and_then(|c| control_value(c, "default_version"))
            .or_else(|| package("version")),
        description: control
            .as_deref()
            .and_then(|c| control_value(c, "comment"))
            .or_else(|| package("description")),
        license: license_of_tree(tree)?,
    })
}

/// A RON string literal.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn build_text(build: &Build) -> String {
    match build {
        Build::CargoPgrx {
            pgrx,
            features,
            no_default_features,
        } => format!(
            "CargoPgrx(pgrx: {}, features: [{}], no_default_features: {no_default_features})",
            quoted(pgrx),
            features
                .iter()
                .map(|f| quoted(f))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Build::Sql => "Sql".into(),
        other => {
            let kind = match other {
                Build::Meson { .. } => "Meson",
                Build::Cmake { .. } => "Cmake",
                Build::Autotools { .. } => "Autotools",
                Build::Make { .. } => "Make",
                _ => "Pgxs",
            };
            format!("{kind}(flags: [])")
        }
    }
}

/// The text of `recipes/<name>.ron` for a tree `detected` as it is, pinned at `commit`
/// (with `tag` as its label) of `url`.
pub fn render(
    name: &RecipeName,
    url: &str,
    commit: CommitSha,
    tag: Option<&str>,
    category: &str,
    detected: &Detected,
) -> String {
    let version = detected
        .version
        .clone()
        .or_else(|| tag.map(|t| t.trim_start_matches('v').to_owned()))
        .unwrap_or_default();
    let create = detected.kind == RecipeKind::Extension;
    let option = |value: Option<&str>| match value {
        Some(v) => format!("Some({})", quoted(v)),
        None => "None".to_owned(),
    };
    format!(
        "// Scaffolded by `azb recipe add` from {url} at {commit}; review before committing.\n\
         Recipe(\n    \
             name: {name},\n    \
             version: {version},\n    \
             kind: {kind:?},\n    \
             category: {category},\n    \
             description: {description},\n    \
             license: {license},\n    \
             source: Git(\n        \
                 url: {url_text},\n        \
                 commit: \"{commit}\",\n        \
                 tag: {tag},\n    \
             ),\n    \
             build: {build},\n    \
             depends: [],\n    \
             build_packages: [],\n    \
             runtime: (preload: false, create: {create}, preload_only: false),\n    \
             enabled: true,\n    \
             smoke: None,\n\
         )\n",
        name = quoted(name.as_str()),
        version = quoted(&version),
        kind = detected.kind,
        category = quoted(category),
        description = quoted(detected.description.as_deref().unwrap_or_default()),
        license = option(detected.license.as_deref()),
        url_text = quoted(url),
        tag = option(tag),
        build = build_text(&detected.build),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Recipe;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            err::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn detect_in(files: &[(&str, &str)]) -> Result<Detected, ScaffoldError> {
        detect(&"ext".parse().unwrap(), tree(files).path())
    }

    #[test]
    fn build_kinds_are_told_by_the_files_at_the_top() {
        let kind = |files: &[(&str, &str)]| detect_in(files).unwrap().build.kind_name();
        let control = (
            "ext.control",
            "comment = 'An ext'\ndefault_version = '1.2'\n",
        );
        assert_eq!(
            kind(&[
                control,
                ("Makefile", "PGXS := $(shell $(PG_CONFIG) --pgxs)")
            ]),
            "pgxs"
        );
        assert_eq!(kind(&[control, ("Makefile", "all:\n")]), "make");
        assert_eq!(
            kind(&[control, ("configure.ac", ""), ("Makefile", "PGXS")]),
            "autotools"
        );
        assert_eq!(kind(&[control, ("CMakeLists.txt", "")]), "cmake");
        assert_eq!(
            kind(&[control, ("meson.build", ""), ("CMakeLists.txt", "")]),
            "meson"
        );
        assert_eq!(kind(&[control, ("ext--1.2.sql", "")]), "sql");
        let pgrx = detect_in(&[
            control,
            (
                "Cargo.toml",
                "[package]\nname = \"ext\"\nversion = \"0.3.0\"\nlicense = \"Apache-2.0\"\n\
                 [features]\ndefault = [\"pg17\"]\npg18 = [\"pgrx/pg18\"]\n\
                 [dependencies]\npgrx = { version = \"=0.16.1\", default-features = false }\n",
            ),
        ])
        .unwrap();
        assert_eq!(
            pgrx.build,
            Build::CargoPgrx {
                pgrx: "0.16.1".into(),
                features: vec!["pg18".into()],
                no_default_features: true
            }
        );
        assert_eq!(pgrx.license.as_deref(), Some("Apache-2.0"));
        assert!(matches!(
            detect_in(&[("README", "hi")]),
            Err(ScaffoldError::UnknownKind { .. })
        ));
    }

    #[test]
    fn the_rendered_recipe_parses_back_to_what_was_detected() {
        let detected = detect_in(&[
            (
                "ext.control",
                "comment = 'Says \"hi\", isn''t it'\ndefault_version = '1.2'\n",
            ),
            ("Makefile", "PGXS := $(shell $(PG_CONFIG) --pgxs)"),
        ])
        .unwrap();
        assert_eq!(detected.kind, RecipeKind::Extension);
        assert_eq!(detected.version.as_deref(), Some("1.2"));
        let commit: CommitSha = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let text = render(
            &"ext".parse().unwrap(),
            "https://example.invalid/ext",
            commit,
            Some("v1.2"),
            "misc",
            &detected,
        );
        let recipe: Recipe = ron::from_str(&text).unwrap();
        assert_eq!(recipe.description, "Says \"hi\", isn't it");
        assert_eq!(recipe.version, "1.2");
        assert_eq!(recipe.commit(), Some(commit));
        assert_eq!(recipe.tag(), Some("v1.2"));
        assert_eq!(recipe.build, detected.build);
        assert!(recipe.runtime.create);
    }
}
