//! The real catalog in recipes/: every recipe pins exactly the commit of
//! ../shared/upstream-pins.tsv, the set loads and validates, and `azb plan` covers it
//! without a network.

use std::collections::BTreeMap;
use std::process::Command;

use crate::context::{repo_root, shared, stderr, valid_cyclonedx};

/// name -> (kind, commit, enabled) from upstream-pins.tsv, except that a recipe whose file
/// says why it is disabled here (a `// Disabled:` comment: it cannot be built from this
/// project's builders) counts as disabled.
fn pins() -> BTreeMap<String, (String, String, bool)> {
    upstream_pins()
        .into_iter()
        .map(|(name, (kind, commit, enabled))| {
            let file = repo_root().join("recipes").join(format!("{name}.ron"));
            let documented = fs_err::read_to_string(&file)
                .map(|text| text.contains("\n// Disabled: "))
                .unwrap_or(false);
            (name, (kind, commit, enabled && !documented))
        })
        .collect()
}

/// name -> (kind, commit, enabled) as upstream-pins.tsv says.
fn upstream_pins() -> BTreeMap<String, (String, String, bool)> {
    let path = repo_root().join("../shared/upstream-pins.tsv");
    let text =
        fs_err::read_to_string(&path).expect("../shared/upstream-pins.tsv beside the checkout");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (name, kind, commit, enabled) = (
        column("name"),
        column("kind"),
        column("commit"),
        column("enabled"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[name].to_owned(),
                (
                    f[kind].to_owned(),
                    f[commit].to_owned(),
                    f[enabled] == "yes",
                ),
            )
        })
        .collect()
}

#[test]
fn every_recipe_pins_the_upstream_commit() {
    let pins = pins();
    assert_eq!(pins.len(), 40);
    let recipes =
        azb::recipe::load_recipes(&repo_root().join("recipes")).unwrap_or_else(|e| panic!("{e:?}"));
    let names: Vec<&str> = recipes.recipes.keys().map(|n| n.as_str()).collect();
    assert_eq!(
        names,
        pins.keys().map(String::as_str).collect::<Vec<_>>(),
        "one recipe per row"
    );
    for (name, (kind, commit, enabled)) in &pins {
        let recipe = &recipes.recipes[name.as_str()].recipe;
        assert_eq!(
            recipe.commit().map(|c| c.to_string()).unwrap_or_default(),
            *commit,
            "{name}"
        );
        assert_eq!(format!("{:?}", recipe.kind).to_lowercase(), *kind, "{name}");
        assert_eq!(recipe.enabled, *enabled, "{name}");
    }
}

#[test]
fn every_recipe_with_sql_to_call_has_a_smoke_query() {
    let recipes = azb::recipe::load_recipes(&repo_root().join("recipes")).unwrap();
    let without: Vec<&str> = recipes
        .recipes
        .values()
        .filter(|l| l.recipe.smoke.is_none())
        .map(|l| l.recipe.name.as_str())
        .collect();
    // Each of these says why in a comment above its `smoke: None`.
    assert_eq!(without, ["pgbackrest", "pgbadger", "pgflow", "wrappers"]);
    for name in without {
        let text = &recipes.recipes[name].file.text;
        assert!(text.contains("// No smoke query: "), "{name}");
    }
}

#[test]
fn the_catalog_plans_without_a_network() {
    shared();
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_azb"))
        .arg("--project")
        .arg(repo_root())
        .arg("--cache-dir")
        .arg(store.path())
        .args(["plan", "--json"])
        .env("AZB_SOURCE_MIRRORS", "https://github.com/=/nonexistent/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let buildable = pins()
        .values()
        .filter(|(kind, _, enabled)| kind != "builtin" && *enabled)
        .count();
    assert_eq!(
        plan["derivations"].as_array().unwrap().len(),
        buildable * 2,
        "every enabled non-builtin, both platforms"
    );
    assert!(
        fs_err::read_dir(store.path().join("sources"))
            .unwrap()
            .next()
            .is_none(),
        "plan fetched something"
    );
}

#[test]
fn generated_files_are_fresh_and_a_stale_one_is_caught() {
    let azb = |root: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_azb"))
            .arg("--project")
            .arg(root)
            .args(args)
            .output()
            .unwrap()
    };
    let fresh = azb(&repo_root(), &["gen", "--check"]);
    assert!(
        fresh.status.success(),
        "run `azb gen` and commit: {}",
        stderr(&fresh)
    );

    // The source SBOM: valid CycloneDX, every recipe of the image with the pinned commit
    // in its purl, builtins under PostgreSQL's licence.
    let sbom =
        valid_cyclonedx(&fs_err::read(repo_root().join("stacks/runtime/sbom.cdx.json")).unwrap());
    assert_eq!(sbom["metadata"]["lifecycles"][0]["phase"], "pre-build");
    let pins = pins();
    let components = sbom["components"].as_array().unwrap();
    let enabled = pins.values().filter(|(_, _, enabled)| *enabled).count();
    assert_eq!(components.len(), enabled, "every enabled recipe");
    for component in components {
        let name = component["name"].as_str().unwrap();
        let (kind, commit, _) = &pins[name];
        if kind == "builtin" {
            assert_eq!(
                component["licenses"][0]["license"]["id"], "PostgreSQL",
                "{name}"
            );
        } else {
            let purl = component["purl"].as_str().unwrap();
            assert!(purl.ends_with(&format!("@{commit}")), "{name}: {purl}");
        }
    }

    let copy = tempfile::tempdir().unwrap();
    for dir in ["recipes", "stacks", "flake-free-docs"] {
        let status = Command::new("cp")
            .arg("-R")
            .arg(repo_root().join(dir))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let vector = copy.path().join("recipes/vector.ron");
    let text = fs_err::read_to_string(&vector).unwrap().replace(
        "runtime: (preload: false, create: true",
        "runtime: (preload: false, create: false",
    );
    fs_err::write(&vector, text).unwrap();
    let stale = azb(copy.path(), &["gen", "--check"]);
    assert_eq!(stale.status.code(), Some(2));
    let err = stderr(&stale);
    assert!(
        err.contains("flake-free-docs/EXTENSIONS.md is stale")
            && err.contains("01-extensions.sql is stale")
            && !err.contains("sbom.cdx.json"),
        "{err}"
    );
    // A re-pin changes the SBOM (its purl and commit), nothing else.
    let hypopg = copy.path().join("recipes/hypopg.ron");
    let pin = pins["hypopg"].1.clone();
    let moved = "0123456789abcdef0123456789abcdef01234567";
    let text = fs_err::read_to_string(&hypopg)
        .unwrap()
        .replace(&pin, moved);
    fs_err::write(&hypopg, text).unwrap();
    let err = stderr(&azb(copy.path(), &["gen", "--check"]));
    assert!(
        err.contains("stacks/runtime/sbom.cdx.json is stale"),
        "{err}"
    );
    assert!(azb(copy.path(), &["gen"]).status.success());
    assert!(azb(copy.path(), &["gen", "--check"]).status.success());
    let sbom =
        valid_cyclonedx(&fs_err::read(copy.path().join("stacks/runtime/sbom.cdx.json")).unwrap());
    let hypopg = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hypopg")
        .unwrap();
    assert_eq!(hypopg["purl"], format!("pkg:github/hypopg/hypopg@{moved}"));
    let sql = fs_err::read_to_string(
        copy.path()
            .join("stacks/runtime/initdb.d/01-extensions.sql"),
    )
    .unwrap();
    assert!(!sql.contains("\"vector\""), "{sql}");
}
