//! Overlays: ordered patches on the recipe set, from the image definition and --overlay.

use std::collections::BTreeMap;
use std::process::Command;

use crate::context::{TestContext, repo_root, shared, stderr};

fn hashes(ctx: &TestContext, extra: &[&str]) -> BTreeMap<String, String> {
    let out = ctx
        .azb()
        .args(extra)
        .args(["plan", "--json", "--platform", "amd64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["derivations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn overlay(ctx: &TestContext, name: &str, patches: &str) -> String {
    let path = ctx.root().join(format!("{name}.ron"));
    fs_err::write(&path, format!("Overlay(patches: [\n    {patches}\n])\n")).unwrap();
    path.display().to_string()
}

#[test]
fn overlays_apply_in_order_and_only_what_matters_changes_a_hash() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let base = hashes(&ctx, &[]);
    assert_eq!(base.len(), 3);

    // Order matters: the later patch wins.
    let off = overlay(&ctx, "off", "Disable([\"azb_sql\"]),");
    let on = overlay(&ctx, "on", "Enable([\"azb_sql\"]),");
    assert!(!hashes(&ctx, &["--overlay", &off]).contains_key("azb_sql"));
    assert!(hashes(&ctx, &["--overlay", &off, "--overlay", &on]).contains_key("azb_sql"));
    assert!(!hashes(&ctx, &["--overlay", &on, "--overlay", &off]).contains_key("azb_sql"));

    // A mirror changes where bytes come from, never a hash; flags and pins do.
    let mirror = overlay(
        &ctx,
        "mirror",
        "Mirror(name: \"azb_hello\", url: \"file:///elsewhere/azb_hello\"),",
    );
    assert_eq!(hashes(&ctx, &["--overlay", &mirror]), base);
    let flags = overlay(
        &ctx,
        "flags",
        "AddFlags(name: \"azb_sql\", flags: [\"EXTRA=1\"]),",
    );
    let flagged = hashes(&ctx, &["--overlay", &flags]);
    assert_ne!(flagged["azb_sql"], base["azb_sql"]);
    assert_eq!(flagged["azb_hello"], base["azb_hello"]);
    let newer = ctx.commit_fixture("azb_hello", &[("NEWS", "2\n")]);
    let repin = overlay(
        &ctx,
        "repin",
        &format!("Repin(name: \"azb_hello\", commit: \"{newer}\"),"),
    );
    let repinned = hashes(&ctx, &["--overlay", &repin]);
    assert_ne!(repinned["azb_hello"], base["azb_hello"]);
    assert_ne!(repinned["azb_dep"], base["azb_dep"], "dependents follow");
    assert_eq!(repinned["azb_sql"], base["azb_sql"]);

    // The image definition lists overlays too.
    let image = fs_err::read_to_string(ctx.root().join("stacks/image.ron")).unwrap();
    fs_err::write(
        ctx.root().join("stacks/image.ron"),
        image.replace(
            "platforms: {",
            &format!("overlays: [\"{off}\"],\n    platforms: {{"),
        ),
    )
    .unwrap();
    assert!(!hashes(&ctx, &[]).contains_key("azb_sql"));
    assert!(
        hashes(&ctx, &["--overlay", &on]).contains_key("azb_sql"),
        "--overlay comes after the image's"
    );
}

#[test]
fn overlay_problems_are_reported_with_their_place() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let bad = overlay(
        &ctx,
        "bad",
        "Enable([\"azb_hello\", \"nope\"]),\n    Disable([\"azb_hello\"]),",
    );
    let out = ctx
        .azb()
        .args(["--overlay", &bad, "plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("the overlay names recipe `nope`, which does not exist"),
        "{err}"
    );
    assert!(err.contains("bad.ron:2:26"), "{err}");
    // Disabling a dependency of an enabled recipe is caught after the overlays.
    assert!(
        err.contains("`azb_dep` is enabled but depends on `azb_hello`, which is disabled"),
        "{err}"
    );
}

#[test]
fn the_minimal_overlay_keeps_the_preload_four_vector_and_pg_trgm() {
    shared();
    let out = Command::new(env!("CARGO_BIN_EXE_azb"))
        .arg("--project")
        .arg(repo_root())
        .arg("--cache-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .args([
            "--overlay",
            "overlays/minimal.ron",
            "recipe",
            "list",
            "--enabled",
            "--json",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "auto_explain",
            "pg_cron",
            "pg_stat_statements",
            "pg_trgm",
            "pgaudit",
            "plpgsql",
            "vector"
        ]
    );
}
