//! Diagnostics for recipe and image-definition files: a message, the file's text, a span
//! (found from ron's error position or from a field's place in the text), and a hint.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// A RON file's name (as shown to people) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as shown in messages.
    pub name: String,
    /// The whole text.
    pub text: Arc<str>,
}

impl SourceFile {
    /// Wraps text read from `path`.
    pub fn new(path: &Path, text: String) -> Self {
        Self {
            name: path.display().to_string(),
            text: Arc::from(text),
        }
    }

    /// Byte offset of a 1-based line and column (columns count characters).
    pub fn offset(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (index, text_line) in self.text.split_inclusive('\n').enumerate() {
            if index + 1 == line {
                let within: usize = text_line
                    .chars()
                    .take(col.saturating_sub(1))
                    .map(char::len_utf8)
                    .sum();
                return offset + within;
            }
            offset += text_line.len();
        }
        self.text.len()
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The span of `field: <value>`'s value, or of the whole file when the field is absent.
    pub fn field_span(&self, field: &str) -> Range<usize> {
        self.find_field(field).unwrap_or(0..0)
    }

    /// The span of the quoted string `"needle"` inside `field`'s value, else the field's.
    pub fn item_span(&self, field: &str, needle: &str) -> Range<usize> {
        let Some(value) = self.find_field(field) else {
            return 0..0;
        };
        let quoted = format!("\"{needle}\"");
        let rest = &self.text[value.start..];
        let end = rest.find(']').map_or(rest.len(), |i| i + 1);
        match rest[..end].find(&quoted) {
            Some(at) => value.start + at..value.start + at + quoted.len(),
            None => value,
        }
    }

    fn find_field(&self, field: &str) -> Option<Range<usize>> {
        self.find_field_from(field, 0)
    }

    /// The span of `field: <value>`'s value (or of `(...)` in `Variant(...)`) at or after
    /// byte `from`, skipping `//` comments.
    pub(crate) fn find_field_from(&self, field: &str, mut from: usize) -> Option<Range<usize>> {
        let text = &*self.text;
        while let Some(found) = text[from..].find(field) {
            let start = from + found;
            from = start + field.len();
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let in_comment = starts_comment(&text[line_start..start]);
            let before_ok = !in_comment
                && text[..start]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let after = text[from..].trim_start_matches([' ', '\t']);
            if before_ok && after.starts_with(':') {
                let colon = text.len() - after.len();
                let value_start =
                    colon + 1 + (text[colon + 1..].len() - text[colon + 1..].trim_start().len());
                return Some(value_start..value_start + value_len(&text[value_start..]));
            }
            // A variant with a value, `Name(...)`: its value is the group.
            if before_ok && text[from..].starts_with('(') {
                return Some(from..from + value_len(&text[from..]));
            }
        }
        None
    }

    /// Builds a diagnostic at `span`.
    pub fn diagnostic(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> RecipeDiagnostic {
        let (line, col) = self.line_col(span.start);
        RecipeDiagnostic {
            message: message.into(),
            location: format!("{}:{line}:{col}", self.name),
            src: NamedSource::new(self.name.clone(), self.text.clone()),
            span: (span.start, span.end - span.start).into(),
            label: label.into(),
            help,
        }
    }
}

/// Length of one RON value at the start of `text`: a quoted string, a bracketed group, a
/// named group `Name(...)`, or a bare token up to the next `,` or line end.
fn value_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'"') => text[1..].find('"').map_or(text.len(), |i| i + 2),
        Some(b'[' | b'(' | b'{') => {
            let mut depth = 0usize;
            let mut in_string = false;
            for (i, b) in bytes.iter().enumerate() {
                match b {
                    b'"' => in_string = !in_string,
                    b'[' | b'(' | b'{' if !in_string => depth += 1,
                    b']' | b')' | b'}' if !in_string => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
            }
            text.len()
        }
        _ => {
            // An identifier; `Name(...)` (an enum or struct value) runs to its `)`.
            let ident = text
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(text.len());
            if ident > 0 && text[ident..].starts_with('(') {
                ident + value_len(&text[ident..])
            } else {
                text.find([',', '\n', ')']).unwrap_or(text.len())
            }
        }
    }
}

/// One problem in a recipe or image file, shown with its place in the file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{location}: {message}")]
pub struct RecipeDiagnostic {
    message: String,
    location: String,
    #[source_code]
    src: NamedSource<Arc<str>>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

impl RecipeDiagnostic {
    /// `path:line:col` of the problem.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The problem without its location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Every problem found in a set of files, reported together.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} problems in recipes (each shown below)", .0.len())]
pub struct Diagnostics(#[related] pub Vec<RecipeDiagnostic>);

/// Turns a ron parse error into a diagnostic with its position and a hint.
pub(crate) fn from_ron(
    file: &SourceFile,
    error: &ron::error::SpannedError,
    expected: &str,
) -> RecipeDiagnostic {
    use ron::Error as E;
    let start = file.offset(error.span.start.line, error.span.start.col);
    let end = file
        .offset(error.span.end.line, error.span.end.col)
        .max(start);
    let help = match &error.code {
        E::NoSuchStructField { .. } => Some(format!(
            "check the spelling or remove the field; {expected} are described in flake-free-docs/recipes.md"
        )),
        E::MissingStructField { field, .. } => Some(format!("add `{field}: …`")),
        _ => Some(format!(
            "{expected} are described in flake-free-docs/recipes.md"
        )),
    };
    let end = if end == start {
        (start + 1).min(file.text.len())
    } else {
        end
    };
    file.diagnostic(start..end, error.code.to_string(), "here", help)
}

/// Whether `line` (the start of a line, up to some point) opens a `//` comment outside
/// string literals: a URL's `//` in a string does not.
fn starts_comment(line: &str) -> bool {
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_string => {
                chars.next();
            }
            '"' => in_string = !in_string,
            '/' if !in_string && chars.peek() == Some(&'/') => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_in_a_string_is_not_a_comment() {
        assert!(!starts_comment(
            r#"source: Git(url: "https://x.invalid/a", "#
        ));
        assert!(starts_comment(r#"    // commit: "#));
        assert!(starts_comment(r#"name: "a\"//", // commit"#));
        assert!(!starts_comment(r#"name: "a\"//", "#));
    }

    fn file(text: &str) -> SourceFile {
        SourceFile::new(Path::new("r.ron"), text.to_owned())
    }

    #[test]
    fn spans_of_fields_and_items() {
        let f = file("Recipe(\n    name: \"a\",\n    depends: [\"b\", \"c\"],\n)\n");
        assert_eq!(&f.text[f.field_span("name")], "\"a\"");
        assert_eq!(&f.text[f.field_span("depends")], "[\"b\", \"c\"]");
        assert_eq!(&f.text[f.item_span("depends", "c")], "\"c\"");
        assert_eq!(f.line_col(f.item_span("depends", "c").start), (3, 20));
        assert_eq!(f.offset(3, 20), f.item_span("depends", "c").start);
    }

    #[test]
    fn fields_in_comments_are_not_fields() {
        let f = file("// name: \"not this\"\n(name: \"this\")");
        assert_eq!(&f.text[f.field_span("name")], "\"this\"");
    }

    #[test]
    fn field_names_match_whole_words_only() {
        let f = file("(subname: \"x\", name: \"y\")");
        assert_eq!(&f.text[f.field_span("name")], "\"y\"");
    }
}
