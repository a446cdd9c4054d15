//! Release tags: which upstream tags are newer releases than a pinned one. Tags are read as
//! the numbers in them (`v0.8.2`, `ver_1.5.3`, `REL4_2_0`, `release/2.58.0`); pre-releases
//! (`rc`, `beta`, `alpha`, `dev`, `pre`) and tags without numbers are never releases.
//!
//! Owns that comparison only; the tags come from the caller (fetch lists them).

/// The numbers in a release tag; None for pre-releases and tags without numbers.
pub fn release_numbers(tag: &str) -> Option<Vec<u64>> {
    let lower = tag.to_ascii_lowercase();
    if ["rc", "beta", "alpha", "dev", "pre"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return None;
    }
    let numbers: Vec<u64> = tag
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    (!numbers.is_empty()).then_some(numbers)
}

/// The tags among `tags` that are newer releases than `pinned`, oldest first; empty when
/// `pinned` is not a release tag.
pub fn newer_releases<'a>(pinned: &str, tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let Some(pinned) = release_numbers(pinned) else {
        return Vec::new();
    };
    let mut newer: Vec<(Vec<u64>, &str)> = tags
        .into_iter()
        .filter_map(|name| {
            release_numbers(name)
                .filter(|n| *n > pinned)
                .map(|n| (n, name))
        })
        .collect();
    newer.sort();
    newer.into_iter().map(|(_, name)| name.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_numbers_of_catalog_tags() {
        assert_eq!(release_numbers("v0.8.2"), Some(vec![0, 8, 2]));
        assert_eq!(release_numbers("ver_1.5.3"), Some(vec![1, 5, 3]));
        assert_eq!(release_numbers("REL4_2_0"), Some(vec![4, 2, 0]));
        assert_eq!(release_numbers("release/2.58.0"), Some(vec![2, 58, 0]));
        assert_eq!(release_numbers("v1.0.0-rc1"), None);
        assert!(release_numbers("v0.10.0") > release_numbers("v0.9.9"));
    }

    #[test]
    fn newer_releases_are_sorted_by_number_not_text() {
        let tags = [
            "v0.9.0",
            "v0.10.0",
            "v0.8.2",
            "v0.8.1",
            "v1.0.0-rc1",
            "nightly",
        ];
        assert_eq!(newer_releases("v0.8.2", tags), ["v0.9.0", "v0.10.0"]);
        assert!(newer_releases("nightly", tags).is_empty());
    }
}
