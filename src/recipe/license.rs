//! Which licence a source tree declares, as an SPDX identifier: from a package manifest
//! (Cargo.toml `license`, PGXN META.json `license`), an `SPDX-License-Identifier:` line, or
//! the text of a licence file recognised by the phrases that make each licence what it is.
//!
//! Owns that recognition only. Reads the files it is pointed at; never fetches. A text it
//! does not recognise declares nothing: azb never guesses a licence.

use std::path::Path;

use crate::fs::{FsError, err, sorted_entries};

/// File names (case-insensitive prefixes) that hold a licence text.
const LICENSE_FILE_PREFIXES: [&str; 5] = ["LICENSE", "LICENCE", "COPYING", "NOTICE", "COPYRIGHT"];

/// Whether `file_name` is a licence file (`LICENSE`, `LICENSE.md`, `COPYING`, ...).
pub fn is_license_file(file_name: &str) -> bool {
    let upper = file_name.to_ascii_uppercase();
    LICENSE_FILE_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// (SPDX id, phrases that must all appear, phrases that must not), most specific first.
/// Phrases are lowercase with single spaces; texts are compared the same way. The GNU
/// texts do not say whether "or any later version" applies (the source headers do), so
/// they map to the version-only SPDX ids.
const TEXTS: &[(&str, &[&str], &[&str])] = &[
    (
        "AGPL-3.0",
        &["gnu affero general public license", "version 3"],
        &[],
    ),
    (
        "LGPL-3.0",
        &["gnu lesser general public license", "version 3"],
        &[],
    ),
    (
        "LGPL-2.1",
        &["gnu lesser general public license", "version 2.1"],
        &[],
    ),
    (
        "GPL-3.0",
        &["gnu general public license", "version 3,"],
        &["lesser", "affero"],
    ),
    (
        "GPL-2.0",
        &["gnu general public license", "version 2,"],
        &["lesser", "affero"],
    ),
    ("Apache-2.0", &["apache license", "version 2.0"], &[]),
    ("MPL-2.0", &["mozilla public license", "version 2.0"], &[]),
    (
        "MIT",
        &["permission is hereby granted, free of charge, to any person obtaining a copy"],
        &[],
    ),
    (
        "ISC",
        &[
            "permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted",
        ],
        &[],
    ),
    (
        "PostgreSQL",
        &[
            "permission to use, copy, modify, and distribute this software and its documentation for any purpose, without fee, and without a written agreement is hereby granted",
        ],
        &[],
    ),
    (
        "BSD-3-Clause",
        &[
            "redistribution and use in source and binary forms",
            "neither the name",
        ],
        &[],
    ),
    (
        "BSD-2-Clause",
        &["redistribution and use in source and binary forms"],
        &["neither the name"],
    ),
];

/// PGXN META.json licence names (CPAN::Meta::Spec) and their SPDX ids.
const PGXN: &[(&str, &str)] = &[
    ("postgresql", "PostgreSQL"),
    ("mit", "MIT"),
    ("apache_2_0", "Apache-2.0"),
    ("bsd", "BSD-3-Clause"),
    ("gpl_2", "GPL-2.0"),
    ("gpl_3", "GPL-3.0"),
    ("lgpl_2_1", "LGPL-2.1"),
    ("lgpl_3_0", "LGPL-3.0"),
    ("agpl_3", "AGPL-3.0"),
    ("mozilla_2_0", "MPL-2.0"),
];

/// An SPDX expression as written in a manifest: ids, `AND`/`OR`/`WITH`, parentheses.
fn spdx_expression(text: &str) -> Option<String> {
    let text = text.trim().trim_matches('"').trim();
    let ok = !text.is_empty()
        && text.len() <= 200
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .+-()".contains(c));
    // Cargo's old `/` separator means OR.
    ok.then(|| text.to_owned()).or_else(|| {
        let parts: Vec<&str> = text.split('/').map(str::trim).collect();
        (parts.len() > 1 && parts.iter().all(|p| spdx_expression(p).is_some()))
            .then(|| parts.join(" OR "))
    })
}

/// Whether `id` is one of the SPDX ids azb recognises (and so writes) itself.
pub fn is_recognised_id(id: &str) -> bool {
    TEXTS.iter().any(|(known, _, _)| *known == id) || PGXN.iter().any(|(_, known)| *known == id)
}

/// Whether `text` is written as an SPDX expression (ids, `AND`/`OR`/`WITH`, parentheses).
pub fn is_license_expression(text: &str) -> bool {
    spdx_expression(text).as_deref() == Some(text)
}

/// The licence a licence file's text declares.
pub fn license_of_text(text: &str) -> Option<String> {
    for line in text.lines().take(40) {
        if let Some(at) = line.find("SPDX-License-Identifier:") {
            return spdx_expression(&line[at + "SPDX-License-Identifier:".len()..]);
        }
    }
    let flat = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    TEXTS
        .iter()
        .find(|(_, all, none)| {
            all.iter().all(|p| flat.contains(p)) && !none.iter().any(|p| flat.contains(p))
        })
        .map(|(id, _, _)| (*id).to_owned())
}

/// `license = "..."` in Cargo.toml's `[package]` table.
fn cargo_license(text: &str) -> Option<String> {
    let manifest: toml::Table = toml::from_str(text).ok()?;
    spdx_expression(manifest.get("package")?.get("license")?.as_str()?)
}

/// `"license"` in a PGXN META.json (a name, a list of names, or a map of name -> URL).
fn pgxn_license(text: &str) -> Option<String> {
    let meta: serde_json::Value = serde_json::from_str(text).ok()?;
    let names: Vec<String> = match meta.get("license")? {
        serde_json::Value::String(name) => vec![name.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        _ => return None,
    };
    let ids: Vec<&str> = names
        .iter()
        .map(|n| {
            PGXN.iter()
                .find(|(pgxn, _)| n.eq_ignore_ascii_case(pgxn))
                .map(|(_, spdx)| *spdx)
        })
        .collect::<Option<_>>()?;
    (!ids.is_empty()).then(|| ids.join(" OR "))
}

/// The licence a source tree (its top directory) declares: the package manifest first, then
/// the licence files (several different licences are joined with AND); None when nothing
/// recognisable is there.
pub fn license_of_tree(dir: &Path) -> Result<Option<String>, FsError> {
    let read = |name: &str| -> Result<Option<String>, FsError> {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = err::read(&path).map_err(|e| FsError::new("read", &path, e))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    };
    if let Some(found) = read("Cargo.toml")?.as_deref().and_then(cargo_license) {
        return Ok(Some(found));
    }
    if let Some(found) = read("META.json")?.as_deref().and_then(pgxn_license) {
        return Ok(Some(found));
    }
    let mut texts = Vec::new();
    for entry in sorted_entries(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_license_file(&name)
            && let Some(text) = read(&name)?
        {
            texts.push(text);
        }
    }
    Ok(license_of_texts(texts.iter().map(String::as_str)))
}

/// The licences several licence files declare, each once, joined with AND.
pub fn license_of_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut ids: Vec<String> = texts.into_iter().filter_map(license_of_text).collect();
    ids.sort();
    ids.dedup();
    (!ids.is_empty()).then(|| ids.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTGRESQL: &str = "PostgreSQL License\n\nPermission to use, copy, modify, and \
        distribute this software and its documentation\nfor any purpose, without fee, and \
        without a written agreement is hereby\ngranted, provided that the above copyright \
        notice and this paragraph\nand the following two paragraphs appear in all copies.";
    const MIT: &str = "MIT License\n\nPermission is hereby granted, free of charge, to any \
        person obtaining a copy\nof this software and associated documentation files";

    #[test]
    fn licence_texts_are_recognised_by_their_phrases() {
        assert_eq!(license_of_text(POSTGRESQL).as_deref(), Some("PostgreSQL"));
        assert_eq!(license_of_text(MIT).as_deref(), Some("MIT"));
        assert_eq!(
            license_of_text("                                 Apache License\n                           Version 2.0, January 2004").as_deref(),
            Some("Apache-2.0")
        );
        assert_eq!(
            license_of_text("GNU GENERAL PUBLIC LICENSE\n Version 2, June 1991").as_deref(),
            Some("GPL-2.0")
        );
        assert_eq!(
            license_of_text("GNU LESSER GENERAL PUBLIC LICENSE\nVersion 2.1, February 1999")
                .as_deref(),
            Some("LGPL-2.1")
        );
        let bsd2 = "Redistribution and use in source and binary forms, with or without";
        assert_eq!(license_of_text(bsd2).as_deref(), Some("BSD-2-Clause"));
        let bsd3 = format!("{bsd2}\n3. Neither the name of the copyright holder");
        assert_eq!(license_of_text(&bsd3).as_deref(), Some("BSD-3-Clause"));
        assert_eq!(
            license_of_text("// SPDX-License-Identifier: Apache-2.0 OR MIT\n").as_deref(),
            Some("Apache-2.0 OR MIT")
        );
        assert_eq!(license_of_text("All rights reserved. Ask us."), None);
        assert_eq!(license_of_text("SPDX-License-Identifier: <script>"), None);
    }

    #[test]
    fn manifests_declare_before_files() {
        let dir = tempfile::tempdir().unwrap();
        err::write(dir.path().join("LICENSE"), MIT).unwrap();
        assert_eq!(license_of_tree(dir.path()).unwrap().as_deref(), Some("MIT"));
        err::write(
            dir.path().join("META.json"),
            r#"{"name": "x", "license": "postgresql"}"#,
        )
        .unwrap();
        assert_eq!(
            license_of_tree(dir.path()).unwrap().as_deref(),
            Some("PostgreSQL")
        );
        err::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"x\"\nlicense = \"MIT/Apache-2.0\"\n[dependencies]\nlicense = \"1\"\n",
        )
        .unwrap();
        assert_eq!(
            license_of_tree(dir.path()).unwrap().as_deref(),
            Some("MIT OR Apache-2.0")
        );
    }

    #[test]
    fn several_files_join_with_and_and_unknown_ones_add_nothing() {
        let dir = tempfile::tempdir().unwrap();
        err::write(
            dir.path().join("LICENSE-APACHE"),
            "Apache License\nVersion 2.0",
        )
        .unwrap();
        err::write(dir.path().join("LICENSE-MIT"), MIT).unwrap();
        err::write(dir.path().join("NOTICE"), "Made by us.").unwrap();
        assert_eq!(
            license_of_tree(dir.path()).unwrap().as_deref(),
            Some("Apache-2.0 AND MIT")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(license_of_tree(empty.path()).unwrap(), None);
    }
}
