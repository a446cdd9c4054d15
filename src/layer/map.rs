//! Where an artifact path goes in the image (see the module docs for the layout).

use std::path::{Component, Path};

/// `path` as `/`-joined normal parts (`.` dropped); `None` when it climbs out (`..`) or is
/// absolute.
pub fn relative_path(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// An artifact path outside lib/, bin/, share/, include/ and licenses/.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutsideLayout;

/// Where an artifact's paths go in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The PostgreSQL image's Debian layout for this major version (see the module docs).
    Debian(u32),
    /// At the image root, as the artifact has them (`lib/`, `share/`, `bin/`,
    /// `licenses/`): an extension image, mounted as a volume by CloudNativePG.
    Root,
}

/// Where the artifact path `path` (relative, `/`-joined) goes in the image: `Ok(None)` for
/// the prefix itself and for `include/` (never in the image), `Err` for paths outside the
/// artifact layout.
pub fn image_path(path: &str, pg_major: u32) -> Result<Option<String>, OutsideLayout> {
    Layout::Debian(pg_major).place(path)
}

impl Layout {
    /// Where the artifact path `path` (relative, `/`-joined) goes: `Ok(None)` for the
    /// prefix itself and for `include/` (never in an image), `Err` for paths outside the
    /// artifact layout.
    pub fn place(self, path: &str) -> Result<Option<String>, OutsideLayout> {
        if path.is_empty() {
            return Ok(None);
        }
        let (top, rest) = path.split_once('/').unwrap_or((path, ""));
        let base = match (self, top) {
            (_, "include") => return Ok(None),
            (Layout::Root, "lib" | "bin" | "share" | "licenses") => top.to_owned(),
            (Layout::Debian(major), "lib") => format!("usr/lib/postgresql/{major}/lib"),
            (Layout::Debian(major), "bin") => format!("usr/lib/postgresql/{major}/bin"),
            (Layout::Debian(major), "share") => format!("usr/share/postgresql/{major}"),
            (Layout::Debian(_), "licenses") => "usr/share/doc/azb".to_owned(),
            _ => return Err(OutsideLayout),
        };
        Ok(Some(if rest.is_empty() {
            base
        } else {
            format!("{base}/{rest}")
        }))
    }
}
