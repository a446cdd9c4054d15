//! Rewriting a recipe file's pin in place: only the bytes of the `commit` value (and the
//! `tag` label, and the `version` when the new tree declares another) change; comments,
//! layout and every other field stay as they were.

use super::CommitSha;
use super::diagnostic::SourceFile;

/// A recipe file whose pin cannot be found.
#[derive(Debug, thiserror::Error)]
#[error("`{file}` has no `source: Git(commit: …)` to re-pin")]
pub struct NoPin {
    /// The file.
    pub file: String,
}

/// The text of `file` with its top-level `version` value, now `current`, set to
/// `version`; None when the file has no such field holding `current`.
pub fn set_version(file: &SourceFile, current: &str, version: &str) -> Option<String> {
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let span = file.find_field_from("version", 0)?;
    let text = &*file.text;
    if text[span.clone()] != quote(current) {
        return None;
    }
    Some(format!(
        "{}{}{}",
        &text[..span.start],
        quote(version),
        &text[span.end..]
    ))
}

/// The text of `file` with its commit set to `commit` and its tag label to `tag`.
pub fn set_pin(file: &SourceFile, commit: CommitSha, tag: Option<&str>) -> Result<String, NoPin> {
    let no_pin = || NoPin {
        file: file.name.clone(),
    };
    let source = file.find_field_from("source", 0).ok_or_else(no_pin)?;
    let commit_span = file
        .find_field_from("commit", source.start)
        .filter(|s| s.end <= source.end)
        .ok_or_else(no_pin)?;
    let tag_span = file
        .find_field_from("tag", source.start)
        .filter(|s| s.end <= source.end);
    let tag_text = match tag {
        Some(tag) => format!(
            "Some(\"{}\")",
            tag.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => "None".to_owned(),
    };
    let text = &*file.text;
    let mut out = String::with_capacity(text.len() + 64);
    match tag_span {
        Some(tag_span) if tag_span.start > commit_span.start => {
            out.push_str(&text[..commit_span.start]);
            out.push_str(&format!("\"{commit}\""));
            out.push_str(&text[commit_span.end..tag_span.start]);
            out.push_str(&tag_text);
            out.push_str(&text[tag_span.end..]);
        }
        Some(tag_span) => {
            out.push_str(&text[..tag_span.start]);
            out.push_str(&tag_text);
            out.push_str(&text[tag_span.end..commit_span.start]);
            out.push_str(&format!("\"{commit}\""));
            out.push_str(&text[commit_span.end..]);
        }
        None => {
            out.push_str(&text[..commit_span.start]);
            out.push_str(&format!("\"{commit}\""));
            out.push_str(&text[commit_span.end..]);
            if tag.is_some() {
                // Add the label after the commit, on its own line when the commit has one.
                let insert_at = out.len() - (text.len() - commit_span.end);
                let after = &text[commit_span.end..];
                let line_end = after.find('\n').map_or(after.len(), |i| i);
                let indent: String = text[..commit_span.start]
                    .rsplit('\n')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take_while(|c| c.is_whitespace())
                    .collect();
                let head = &after[..line_end];
                let addition = if head.trim_start().starts_with(',') {
                    format!("\n{indent}tag: {tag_text},")
                } else {
                    format!(", tag: {tag_text}")
                };
                let at = insert_at
                    + if head.trim_start().starts_with(',') {
                        head.find(',').unwrap_or(0) + 1
                    } else {
                        0
                    };
                out.insert_str(at, &addition);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const OLD: &str = "0123456789abcdef0123456789abcdef01234567";
    const NEW: &str = "89abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_source_on_one_line_with_a_url_is_re_pinned() {
        let text = format!(
            "Recipe(name: \"x\", kind: Extension, source: Git(url: \"https://x.invalid/x\", commit: \"{OLD}\"), build: Pgxs())"
        );
        assert_eq!(
            pin(&text, Some("v2")),
            format!(
                "Recipe(name: \"x\", kind: Extension, source: Git(url: \"https://x.invalid/x\", commit: \"{NEW}\", tag: Some(\"v2\")), build: Pgxs())"
            )
        );
    }

    fn pin(text: &str, tag: Option<&str>) -> String {
        set_pin(
            &SourceFile::new(Path::new("r.ron"), text.to_owned()),
            NEW.parse().unwrap(),
            tag,
        )
        .unwrap()
    }

    #[test]
    fn only_the_pin_changes() {
        let text = format!(
            "// vector: keep this comment; commit: \"{OLD}\" in a comment stays\nRecipe(\n    name: \"vector\",\n    source: Git(\n        url: \"u\",\n        commit:   \"{OLD}\", // trailing\n        tag: Some(\"v1\"),\n    ),\n)\n"
        );
        let out = pin(&text, Some("v2"));
        assert_eq!(
            out,
            text.replacen(
                &format!("commit:   \"{OLD}\""),
                &format!("commit:   \"{NEW}\""),
                1
            )
            .replace("Some(\"v1\")", "Some(\"v2\")")
        );
        assert!(out.starts_with(&format!("// vector: keep this comment; commit: \"{OLD}\"")));
        assert_eq!(
            pin(&text, None),
            text.replacen(
                &format!("commit:   \"{OLD}\""),
                &format!("commit:   \"{NEW}\""),
                1
            )
            .replace("Some(\"v1\")", "None")
        );
    }

    #[test]
    fn a_missing_tag_is_added_after_the_commit() {
        let text = format!(
            "Recipe(\n    source: Git(\n        url: \"u\",\n        commit: \"{OLD}\",\n    ),\n)\n"
        );
        assert_eq!(
            pin(&text, Some("v2")),
            format!(
                "Recipe(\n    source: Git(\n        url: \"u\",\n        commit: \"{NEW}\",\n        tag: Some(\"v2\"),\n    ),\n)\n"
            )
        );
        let one_line = format!("(source: Git(url: \"u\", commit: \"{OLD}\"))");
        assert_eq!(
            pin(&one_line, Some("v2")),
            format!("(source: Git(url: \"u\", commit: \"{NEW}\", tag: Some(\"v2\")))")
        );
        assert_eq!(
            pin(&one_line, None),
            format!("(source: Git(url: \"u\", commit: \"{NEW}\"))")
        );
    }
}
