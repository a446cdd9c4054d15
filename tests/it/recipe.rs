//! `azb recipe list | show | check | add | bump` against local repositories standing in for
//! upstreams.

use crate::context::{TestContext, UPSTREAM, repo_root, shared, stderr};

#[test]
fn bump_to_a_tag_rewrites_only_the_pin_and_lists_what_rebuilds() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let before = fs_err::read_to_string(ctx.recipe_path("azb_hello")).unwrap();
    let old = before
        .lines()
        .find(|l| l.trim_start().starts_with("commit:"))
        .unwrap()
        .to_owned();
    let new_commit = ctx.commit_fixture("azb_hello", &[("CHANGES", "2.0\n")]);
    ctx.tag_fixture("azb_hello", "v2.0");

    let out = ctx.run(&["recipe", "bump", "azb_hello", "v2.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = fs_err::read_to_string(ctx.recipe_path("azb_hello")).unwrap();
    let expected = before
        .replace(
            &old,
            &old.replace(old.split('"').nth(1).unwrap(), &new_commit),
        )
        .replace("tag: Some(\"v1.0\")", "tag: Some(\"v2.0\")");
    assert_eq!(after, expected, "only the commit and the tag label change");

    let mut rebuilds: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    rebuilds.sort();
    assert_eq!(
        rebuilds,
        [
            "rebuild linux/amd64 azb_dep",
            "rebuild linux/amd64 azb_hello",
            "rebuild linux/arm64 azb_dep",
            "rebuild linux/arm64 azb_hello"
        ]
    );
}

#[test]
fn bump_takes_the_version_the_new_tree_declares() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let before = fs_err::read_to_string(ctx.recipe_path("azb_hello")).unwrap();
    assert!(before.contains("version: \"1.0\""), "{before}");
    let control = fs_err::read_to_string(
        repo_root().join("tests/fixtures/extensions/azb_hello/azb_hello.control"),
    )
    .unwrap()
    .replace("default_version = '1.0'", "default_version = '2.1'");
    ctx.commit_fixture("azb_hello", &[("azb_hello.control", &control)]);
    ctx.tag_fixture("azb_hello", "v2.1");
    let out = ctx.run(&["recipe", "bump", "azb_hello", "v2.1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("version 1.0 -> 2.1"),
        "{}",
        stderr(&out)
    );
    let after = fs_err::read_to_string(ctx.recipe_path("azb_hello")).unwrap();
    assert!(
        after.contains("version: \"2.1\"") && after.contains("tag: Some(\"v2.1\")"),
        "{after}"
    );
    let show = ctx.ok(&["recipe", "show", "azb_hello"]);
    assert!(show.contains("2.1"), "{show}");
}

#[test]
fn bump_to_a_commit_takes_the_tag_that_names_it_if_any() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let untagged = ctx.commit_fixture("azb_sql", &[("NEWS", "1.1\n")]);
    ctx.ok(&["recipe", "bump", "azb_sql", &untagged]);
    let text = fs_err::read_to_string(ctx.recipe_path("azb_sql")).unwrap();
    assert!(
        text.contains(&format!("commit: \"{untagged}\"")) && text.contains("tag: None"),
        "{text}"
    );
    ctx.tag_fixture("azb_sql", "v1.1");
    ctx.ok(&["recipe", "bump", "azb_sql", &untagged]);
    assert!(
        fs_err::read_to_string(ctx.recipe_path("azb_sql"))
            .unwrap()
            .contains("tag: Some(\"v1.1\")")
    );
}

#[test]
fn bump_refuses_what_the_remote_lacks_and_leaves_the_file_alone() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let before = fs_err::read(ctx.recipe_path("azb_hello")).unwrap();
    for (rev, message) in [
        (
            "1111111111111111111111111111111111111111",
            "commit 1111111111111111111111111111111111111111 is not in",
        ),
        ("v9.9", "`v9.9` is neither a 40-hex commit nor a tag of"),
    ] {
        let out = ctx.run(&["recipe", "bump", "azb_hello", rev]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        assert_eq!(fs_err::read(ctx.recipe_path("azb_hello")).unwrap(), before);
    }
    let out = ctx.run(&["recipe", "bump", "nope", "v1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no recipe `nope`"));
}

#[test]
fn list_show_and_check() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let list: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["recipe", "list", "--json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["azb_dep", "azb_hello", "azb_sql"]);
    let shown = ctx.ok(&["recipe", "show", "azb_dep"]);
    assert!(
        shown.contains("depends: [\"azb_hello\"]") || shown.contains("\"azb_hello\""),
        "{shown}"
    );
    assert_eq!(
        shown
            .lines()
            .filter(|l| l.starts_with("derivation linux/"))
            .count(),
        2,
        "{shown}"
    );
    let check = ctx.run(&["recipe", "check"]);
    assert!(check.status.success(), "{}", stderr(&check));

    // The real catalog passes too, and its filters work.
    let catalog = std::process::Command::new(env!("CARGO_BIN_EXE_azb"))
        .arg("--project")
        .arg(repo_root())
        .args(["recipe", "check"])
        .output()
        .unwrap();
    assert!(catalog.status.success(), "{}", stderr(&catalog));
    let builtins = std::process::Command::new(env!("CARGO_BIN_EXE_azb"))
        .arg("--project")
        .arg(repo_root())
        .args(["recipe", "list", "--kind", "builtin", "--json"])
        .output()
        .unwrap();
    let builtins: serde_json::Value = serde_json::from_slice(&builtins.stdout).unwrap();
    assert_eq!(builtins.as_array().unwrap().len(), 6);
}

#[test]
fn check_online_reports_a_moved_tag_and_outdated_lists_newer_ones() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    for name in ["azb_hello", "azb_dep", "azb_sql"] {
        ctx.tag_fixture(name, "v1.0");
    }
    let ok = ctx.run(&["recipe", "check", "--online"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(ctx.ok(&["recipe", "outdated"]).is_empty());

    // Upstream moves v1.0 of azb_sql to a new commit and releases v1.2 and a candidate.
    let before = fs_err::read(ctx.recipe_path("azb_sql")).unwrap();
    let moved = ctx.commit_fixture("azb_sql", &[("NEWS", "moved\n")]);
    ctx.tag_fixture("azb_sql", "v1.0");
    ctx.tag_fixture("azb_sql", "v1.2");
    ctx.tag_fixture("azb_sql", "v2.0-rc1");
    let out = ctx.run(&["recipe", "check", "--online"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("recipes/azb_sql.ron: tag `v1.0` of https://fixtures.invalid/azb_sql now points at {moved}")), "{err}");
    assert!(!err.contains("azb_hello.ron"), "{err}");
    assert_eq!(
        fs_err::read(ctx.recipe_path("azb_sql")).unwrap(),
        before,
        "a moved tag is never followed"
    );
    assert_eq!(
        ctx.ok(&["recipe", "outdated"]),
        "azb_sql v1.0 -> v1.2 (newer: v1.2)\n"
    );
    // An upstream that is gone: reported, the rest still checked, exit 3 at the end.
    let upstream = ctx.root().join("upstreams/azb_hello");
    fs_err::rename(&upstream, upstream.with_extension("gone")).unwrap();
    let out = ctx.run(&["recipe", "outdated"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "azb_sql v1.0 -> v1.2 (newer: v1.2)\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("azb_hello") && err.contains("1 upstream(s) could not be fetched"),
        "{err}"
    );
}

#[test]
fn add_scaffolds_a_recipe_that_builds_from_what_the_tree_says() {
    shared();
    let ctx = TestContext::new();
    let commit = ctx.commit_fixture("azb_hello", &[]);
    ctx.tag_fixture("azb_hello", "v1.0");
    let out = ctx.run(&[
        "recipe",
        "add",
        "azb_hello",
        "--git",
        &format!("{UPSTREAM}azb_hello"),
        "--commit",
        &commit,
        "--category",
        "testing",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut built: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    built.sort();
    assert_eq!(
        built,
        ["build linux/amd64 azb_hello", "build linux/arm64 azb_hello"]
    );
    let recipe: azb::recipe::Recipe =
        ron::from_str(&fs_err::read_to_string(ctx.recipe_path("azb_hello")).unwrap()).unwrap();
    assert_eq!(recipe.build.kind_name(), "pgxs");
    assert_eq!(recipe.kind, azb::recipe::RecipeKind::Extension);
    assert_eq!(recipe.commit().unwrap().to_string(), commit);
    assert_eq!(
        recipe.tag(),
        Some("v1.0"),
        "the tag naming the commit is the label"
    );
    assert_eq!(
        recipe.license.as_deref(),
        Some("MIT"),
        "from the tree's LICENSE"
    );
    assert_eq!(recipe.category, "testing");
    assert!(!recipe.version.is_empty() && !recipe.description.is_empty());
    // What was written builds and passes the rules.
    ctx.ok(&["recipe", "check"]);
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A tag is pinned as the commit it names; other build systems are told by their files.
    let cmake = ctx.commit_fixture("azb_cmake", &[]);
    ctx.tag_fixture("azb_cmake", "v0.1");
    ctx.ok(&[
        "recipe",
        "add",
        "azb_cmake",
        "--git",
        &format!("{UPSTREAM}azb_cmake"),
        "--commit",
        "v0.1",
    ]);
    let text = fs_err::read_to_string(ctx.recipe_path("azb_cmake")).unwrap();
    assert!(
        text.contains(&format!("commit: \"{cmake}\""))
            && text.contains("tag: Some(\"v0.1\")")
            && text.contains("build: Cmake(flags: [])"),
        "{text}"
    );
}

#[test]
fn add_refuses_bad_input_and_writes_nothing() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let sql = ctx.commit_fixture("azb_sqlkind", &[]);
    let nobuild = ctx.commit_fixture("azb_nobuild", &[]);
    let url = |name: &str| format!("{UPSTREAM}{name}");
    let recipes = || {
        let mut names: Vec<String> = fs_err::read_dir(ctx.root().join("recipes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let hello_before = fs_err::read(ctx.recipe_path("azb_hello")).unwrap();
    let before = recipes();
    for (args, message) in [
        (
            vec!["azb_hello", "--git", &url("azb_hello"), "--commit", &sql],
            "recipe `azb_hello` already exists",
        ),
        (
            vec!["Bad-Name", "--git", &url("azb_sqlkind"), "--commit", &sql],
            "`Bad-Name` is not a recipe name",
        ),
        (
            vec![
                "azb_sqlkind",
                "--git",
                &url("azb_sqlkind"),
                "--commit",
                "2222222222222222222222222222222222222222",
            ],
            "commit 2222222222222222222222222222222222222222 is not in",
        ),
        (
            vec![
                "azb_sqlkind",
                "--git",
                &url("azb_sqlkind"),
                "--commit",
                "v7",
            ],
            "`v7` is neither a 40-hex commit nor a tag of",
        ),
        (
            vec![
                "azb_nobuild",
                "--git",
                &url("azb_nobuild"),
                "--commit",
                &nobuild,
            ],
            "cannot tell how to build `azb_nobuild`",
        ),
    ] {
        let out = ctx.run(&[&["recipe", "add"][..], &args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
        assert_eq!(recipes(), before, "{args:?} wrote a recipe");
    }
    assert_eq!(
        fs_err::read(ctx.recipe_path("azb_hello")).unwrap(),
        hello_before
    );

    // The SQL-only fixture scaffolds as Sql.
    ctx.ok(&[
        "recipe",
        "add",
        "azb_sqlkind",
        "--git",
        &url("azb_sqlkind"),
        "--commit",
        &sql,
    ]);
    let text = fs_err::read_to_string(ctx.recipe_path("azb_sqlkind")).unwrap();
    assert!(text.contains("build: Sql,"), "{text}");
}
