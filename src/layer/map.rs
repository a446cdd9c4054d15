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

/// Where the artifact path `path` (relative, `/`-joined) goes in the image: `Ok(None)` for
/// the prefix itself and for `include/` (never in the image), `Err` for paths outside the
/// artifact layout.
pub fn image_path(path: &str, pg_major: u32) -> Result<Option<String>, OutsideLayout> {
    if path.is_empty() {
        return Ok(None);
    }
    let (top, rest) = path.split_once('/').unwrap_or((path, ""));
    let base = match top {
        "lib" => format!("usr/lib/postgresql/{pg_major}/lib"),
        "bin" => format!("usr/lib/postgresql/{pg_major}/bin"),
        "share" => format!("usr/share/postgresql/{pg_major}"),
        "licenses" => "usr/share/doc/azb".to_owned(),
        "include" => return Ok(None),
        _ => return Err(OutsideLayout),
    };
    Ok(Some(if rest.is_empty() {
        base
    } else {
        format!("{base}/{rest}")
    }))
}
