//! Bad input: each gets a clear message with its place, a non-zero exit, and leaves the
//! recipe files and the store untouched. These fail before any toolchain is needed.

use crate::context::{RecipeSpec, TestContext, stderr};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Runs `azb plan` on a project whose recipe `name` has `text`; checks the exit code, that
/// nothing was written, and returns stderr with the temp root replaced.
fn plan_fails(ctx: &TestContext, expected_code: i32) -> String {
    let before: Vec<(String, Vec<u8>)> = recipe_files(ctx);
    let out = ctx.run(&["plan"]);
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "stderr:\n{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "stdout must stay empty on errors");
    assert_eq!(recipe_files(ctx), before, "recipe files changed");
    assert!(!ctx.store().exists(), "the store was touched");
    stderr(&out).replace(&ctx.root().display().to_string(), "[ROOT]")
}

fn recipe_files(ctx: &TestContext) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs_err::read_dir(ctx.root().join("recipes"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs_err::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn recipe(ctx: &TestContext, name: &str, depends: &[&str]) {
    ctx.write_recipe(RecipeSpec {
        name,
        commit: COMMIT.into(),
        depends,
        enabled: true,
    });
}

#[test]
fn malformed_ron_names_file_line_and_column() {
    let ctx = TestContext::new();
    fs_err::write(
        ctx.recipe_path("bad"),
        "Recipe(\n    name: \"bad\",\n    kind: Extension\n    source: Git(),\n)\n",
    )
    .unwrap();
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("recipes/bad.ron:4:5"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_field_is_rejected_with_the_known_ones() {
    let ctx = TestContext::new();
    recipe(&ctx, "x", &[]);
    let text = fs_err::read_to_string(ctx.recipe_path("x"))
        .unwrap()
        .replace("enabled:", "colour: \"red\",\n    enabled:");
    fs_err::write(ctx.recipe_path("x"), text).unwrap();
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("recipes/x.ron:16:5"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn commit_that_is_not_40_hex_is_rejected() {
    let ctx = TestContext::new();
    ctx.write_recipe(RecipeSpec {
        name: "x",
        commit: "v1.0".into(),
        depends: &[],
        enabled: true,
    });
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("`v1.0` is not a commit"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn missing_dependency_is_reported_at_its_place() {
    let ctx = TestContext::new();
    recipe(&ctx, "x", &["nope"]);
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("recipes/x.ron:14:15"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn dependency_cycle_is_reported_with_its_path() {
    let ctx = TestContext::new();
    recipe(&ctx, "a", &["b"]);
    recipe(&ctx, "b", &["a"]);
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("dependency cycle: a -> b -> a"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn enabled_recipe_with_disabled_dependency_is_an_error() {
    let ctx = TestContext::new();
    recipe(&ctx, "a", &["b"]);
    ctx.write_recipe(RecipeSpec {
        name: "b",
        commit: COMMIT.into(),
        depends: &[],
        enabled: false,
    });
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("depends on `b`, which is disabled"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn several_problems_are_reported_at_once() {
    let ctx = TestContext::new();
    recipe(&ctx, "a", &["missing_one"]);
    ctx.write_recipe(RecipeSpec {
        name: "b",
        commit: "abc".into(),
        depends: &[],
        enabled: true,
    });
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("2 problems"), "{err}");
    assert!(
        err.contains("recipes/a.ron") && err.contains("recipes/b.ron"),
        "{err}"
    );
}

#[test]
fn file_name_must_match_recipe_name() {
    let ctx = TestContext::new();
    recipe(&ctx, "x", &[]);
    fs_err::rename(ctx.recipe_path("x"), ctx.recipe_path("y")).unwrap();
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("differs from its file name `y.ron`"), "{err}");
}

#[test]
fn builtins_have_no_source_and_extensions_need_one() {
    let ctx = TestContext::new();
    fs_err::write(
        ctx.recipe_path("pg_trgm"),
        format!("Recipe(\n    name: \"pg_trgm\",\n    kind: Builtin,\n    source: Git(url: \"u\", commit: \"{COMMIT}\"),\n    build: Pgxs(),\n)\n"),
    )
    .unwrap();
    fs_err::write(
        ctx.recipe_path("ext"),
        "Recipe(\n    name: \"ext\",\n    kind: Extension,\n)\n",
    )
    .unwrap();
    let err = plan_fails(&ctx, 2);
    assert!(
        err.contains(
            "recipes/pg_trgm.ron:3:11: `pg_trgm` is a builtin but has a source or a build"
        ),
        "{err}"
    );
    assert!(
        err.contains("recipes/ext.ron:3:11: `ext` needs a git source and a build kind"),
        "{err}"
    );
}

/// One recipe file `name` with `body` inside `Recipe(...)`; returns `azb plan`'s stderr.
fn one_recipe_fails(name: &str, body: &str) -> String {
    let ctx = TestContext::new();
    fs_err::write(
        ctx.recipe_path(name),
        format!("Recipe(\n    name: \"{name}\",\n{body})\n"),
    )
    .unwrap();
    plan_fails(&ctx, 2)
}

/// Issue 8: `subdir: Some("/etc")` ran `make` in the host's /etc, and `../../..` escaped the
/// source; both are recipe errors now, for every executor.
#[test]
fn a_subdir_outside_the_source_is_refused() {
    for (subdir, column, snapshot) in [
        ("/etc", 13, "subdir_absolute"),
        ("../../..", 13, "subdir_parent"),
    ] {
        let err = one_recipe_fails(
            "x",
            &format!(
                "    kind: Extension,\n    source: Git(url: \"u\", commit: \"{COMMIT}\"),\n    subdir: Some(\"{subdir}\"),\n    build: Pgxs(),\n"
            ),
        );
        assert!(
            err.contains(&format!(
                "recipes/x.ron:5:{column}: `x` builds in `{subdir}`, which is not a directory inside its source"
            )),
            "{err}"
        );
        insta::assert_snapshot!(snapshot, err);
    }
}

/// cargo-pgrx cross-compiles; an emulated arm64 builder for it is refused with its place.
#[test]
fn a_rust_extension_cannot_ask_for_an_emulated_builder() {
    let err = one_recipe_fails(
        "x",
        &format!(
            "    kind: Extension,\n    source: Git(url: \"u\", commit: \"{COMMIT}\"),\n    build: CargoPgrx(pgrx: \"0.16.1\"),\n    emulate_arm64: true,\n"
        ),
    );
    assert!(
        err.contains("recipes/x.ron:6:20: `x` builds with cargo-pgrx, which cross-compiles arm64; it has no emulated builder"),
        "{err}"
    );
    assert!(err.contains("help: remove `emulate_arm64: true`"), "{err}");
}

#[test]
fn a_recipe_that_depends_on_itself_is_an_error() {
    let ctx = TestContext::new();
    recipe(&ctx, "x", &["x"]);
    let err = plan_fails(&ctx, 2);
    assert!(err.contains("`x` depends on itself"), "{err}");
    assert!(err.contains("help: remove it from depends"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn a_tag_without_a_commit_is_refused() {
    let err = one_recipe_fails(
        "x",
        "    kind: Extension,\n    source: Git(url: \"https://example.invalid/x\", tag: Some(\"v1.0\")),\n    build: Pgxs(),\n",
    );
    assert!(err.contains("recipes/x.ron:"), "{err}");
    assert!(err.contains("commit"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn a_bad_recipe_name_is_refused() {
    let err = one_recipe_fails(
        "Vector",
        &format!(
            "    kind: Extension,\n    source: Git(url: \"u\", commit: \"{COMMIT}\"),\n    build: Pgxs(),\n"
        ),
    );
    assert!(err.contains("recipes/Vector.ron:2:12"), "{err}");
    assert!(err.contains("`Vector` is not a recipe name"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn a_preloaded_recipe_must_build_a_library() {
    let err = one_recipe_fails(
        "x",
        &format!(
            "    kind: Extension,\n    source: Git(url: \"u\", commit: \"{COMMIT}\"),\n    build: Sql,\n    runtime: (preload: true),\n"
        ),
    );
    assert!(
        err.contains("recipes/x.ron:6:14: `x` is marked for shared_preload_libraries but builds only SQL files"),
        "{err}"
    );
    assert!(
        err.contains("help: a preloaded module must build a shared library"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn a_licence_must_be_an_spdx_expression() {
    let err = one_recipe_fails(
        "x",
        &format!(
            "    kind: Extension,\n    license: Some(\"MIT; rm -rf /\"),\n    source: Git(url: \"u\", commit: \"{COMMIT}\"),\n    build: Pgxs(),\n"
        ),
    );
    assert!(
        err.contains("recipes/x.ron:4:14: `MIT; rm -rf /` is not an SPDX licence expression"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn an_image_listing_an_unknown_recipe_is_an_error() {
    let ctx = TestContext::new();
    recipe(&ctx, "x", &[]);
    let image = ctx.root().join("stacks/image.ron");
    let text = fs_err::read_to_string(&image)
        .unwrap()
        .replace("\n)\n", "\n    recipes: Only([\"x\", \"nope\"]),\n)\n");
    fs_err::write(&image, text).unwrap();
    let err = plan_fails(&ctx, 2);
    assert!(
        err.contains("the image lists recipe `nope`, which does not exist"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn a_companion_image_definition_names_each_mistake_at_its_place() {
    let ctx = TestContext::new();
    fs_err::write(
        ctx.root().join("stacks/image.ron"),
        r#"Image(
    name: "azb/pgbouncer",
    flavor: "pgbouncer",
    pg_major: 18,
    pg_version: "18.6",
    platforms: {
        "linux/amd64": (base: OciLayout(path: "base", reference: None)),
    },
    recipes: All,
    companion: Some((
        packages: ["pgbouncer"],
        version_from: "pgbouncer-not-listed",
        files: {
            "etc/relative.sh": "stacks/missing.sh",
        },
        user: "postgres",
        entrypoint: ["pgbouncer"],
    )),
)
"#,
    )
    .unwrap();
    let err = plan_fails(&ctx, 2);
    for wanted in [
        "a companion image carries no extensions",
        "write `recipes: Only([])`",
        "`version_from` names `pgbouncer-not-listed`",
        "`etc/relative.sh` is not an absolute path in the image",
        "`stacks/missing.sh` is not a file of the project",
        "stacks/image.ron:9:",
    ] {
        assert!(err.contains(wanted), "{wanted}:\n{err}");
    }
}

#[test]
fn stack_load_of_a_stack_that_is_not_there_names_the_ones_that_are() {
    let ctx = TestContext::new();
    for stack in ["one", "two"] {
        fs_err::create_dir_all(ctx.root().join("stacks").join(stack)).unwrap();
        fs_err::write(
            ctx.root().join("stacks").join(stack).join("compose.yml"),
            "services: {}\n",
        )
        .unwrap();
    }
    for name in ["nosuch", "../stacks", ""] {
        let out = ctx.run(&["stack", "load", name, "--platform", "amd64"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.contains(&format!("no stack `{name}`")) && text.contains("one, two"),
            "{text}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_lock_timeout_that_is_not_seconds_is_refused_before_any_work() {
    let ctx = TestContext::new();
    recipe(&ctx, "azb_hello", &[]);
    let before = recipe_files(&ctx);
    let out = ctx
        .azb()
        .env("AZB_LOCK_TIMEOUT", "ten")
        .arg("plan")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("AZB_LOCK_TIMEOUT must be a whole number of seconds, got 'ten'"),
        "{text}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(recipe_files(&ctx), before);
    assert!(!ctx.store().exists(), "the store was touched");
}

#[test]
fn a_build_memory_that_is_not_a_size_is_refused_before_any_work() {
    let ctx = TestContext::new();
    recipe(&ctx, "azb_hello", &[]);
    let out = ctx
        .azb()
        .env("AZB_BUILD_MEMORY", "lots")
        .arg("plan")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AZB_BUILD_MEMORY must be a size such as 16g or 8192m, got 'lots'"),
        "{}",
        stderr(&out)
    );
    assert!(!ctx.store().exists(), "the store was touched");
}

#[test]
fn a_keep_warm_that_is_not_seconds_is_refused_before_any_work() {
    let ctx = TestContext::new();
    recipe(&ctx, "azb_hello", &[]);
    let out = ctx
        .azb()
        .env("AZB_KEEP_WARM", "10m")
        .arg("plan")
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("AZB_KEEP_WARM must be a whole number of seconds, got '10m'"),
        "{text}"
    );
    assert!(!ctx.store().exists(), "the store was touched");
}
