//! Source overrides: `PREFIX=TARGET` pairs. A URL starting with PREFIX is fetched from
//! TARGET followed by the rest of the URL; the longest matching prefix wins.

/// An override entry that is not `PREFIX=TARGET`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("source mirror entry `{0}` is not PREFIX=TARGET")]
#[diagnostic(help(
    "AZB_SOURCE_MIRRORS holds entries like https://github.com/=/srv/mirrors/ separated by `;`"
))]
pub struct BadMirror(pub String);

/// URL prefix -> replacement, from `AZB_SOURCE_MIRRORS` or configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMirrors {
    entries: Vec<(String, String)>,
}

impl SourceMirrors {
    /// Parses `PREFIX=TARGET` entries separated by `;` or newlines (blank ones skipped).
    pub fn parse(text: &str) -> Result<Self, BadMirror> {
        let mut entries = Vec::new();
        for entry in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match entry.split_once('=') {
                Some((prefix, target)) if !prefix.is_empty() && !target.is_empty() => {
                    entries.push((prefix.to_owned(), target.to_owned()));
                }
                _ => return Err(BadMirror(entry.to_owned())),
            }
        }
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(Self { entries })
    }

    /// Where to fetch `url` from.
    pub fn resolve(&self, url: &str) -> String {
        for (prefix, target) in &self.entries {
            if let Some(rest) = url.strip_prefix(prefix.as_str()) {
                return format!("{target}{rest}");
            }
        }
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_others_pass_through() {
        let m = SourceMirrors::parse(
            "https://github.com/=/srv/mirrors/; https://github.com/pgvector/=/fast/\n",
        )
        .unwrap();
        assert_eq!(
            m.resolve("https://github.com/pgvector/pgvector"),
            "/fast/pgvector"
        );
        assert_eq!(
            m.resolve("https://github.com/citusdata/pg_cron"),
            "/srv/mirrors/citusdata/pg_cron"
        );
        assert_eq!(
            m.resolve("https://gitlab.com/x/y"),
            "https://gitlab.com/x/y"
        );
    }

    #[test]
    fn malformed_entries_are_rejected() {
        assert!(SourceMirrors::parse("no-equals-sign").is_err());
        assert!(SourceMirrors::parse("=target").is_err());
        assert_eq!(SourceMirrors::parse("").unwrap(), SourceMirrors::default());
    }
}
