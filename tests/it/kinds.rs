//! Build kinds beyond PGXS, each shown by a fixture project of that kind, built by azb and
//! loaded into a real PostgreSQL 18 server (amd64; arm64 cross builds under qemu too).

use azb::store::Store;

use crate::context::{TestContext, UPSTREAM, shared, stderr};
use crate::postgres::PgServer;

/// (fixture, build kind as written in the recipe, the value its function returns)
const KINDS: [(&str, &str, &str); 6] = [
    ("azb_cmake", "Cmake()", "101"),
    ("azb_meson", "Meson()", "102"),
    ("azb_make", "Make()", "103"),
    ("azb_sqlkind", "Sql", "104"),
    ("azb_autotools", "Autotools()", "105"),
    // The escape hatch: a script in the recipe compiles and installs.
    (
        "azb_script",
        r#"Script(script: "$CC -O2 -fPIC -shared -I$($PG_CONFIG --includedir-server) -o azb_script.so azb_script.c && lib=$DESTDIR$($PG_CONFIG --pkglibdir) && share=$DESTDIR$($PG_CONFIG --sharedir)/extension && mkdir -p $lib $share && cp azb_script.so $lib/ && cp azb_script.control azb_script--1.0.sql $share/")"#,
        "106",
    ),
];

fn project() -> TestContext {
    let ctx = TestContext::new();
    for (name, build, _) in KINDS {
        let commit = ctx.commit_fixture(name, &[]);
        let text = format!(
            "Recipe(name: \"{name}\", kind: Extension, source: Git(url: \"{UPSTREAM}{name}\", commit: \"{commit}\"), build: {build}, runtime: (create: true))\n"
        );
        fs_err::write(ctx.recipe_path(name), text).unwrap();
    }
    ctx
}

fn artifacts(ctx: &TestContext, platform: &str) -> Vec<Vec<u8>> {
    let plan = ctx.plan(platform);
    let store = Store::open(&ctx.store()).unwrap();
    plan["derivations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| crate::context::stored(&store, d["hash"].as_str().unwrap()).1)
        .collect()
}

fn check(server: &PgServer) {
    for (name, _, value) in KINDS {
        server.psql(&format!("CREATE EXTENSION {name}"));
        assert_eq!(
            server.psql(&format!("SELECT {name}_answer()")),
            value,
            "{name}"
        );
    }
}

/// Builds every kind's fixture for both platforms and loads each set into PostgreSQL 18.
fn build_and_check(ctx: &TestContext) {
    let shared = shared();
    for platform in ["amd64", "arm64"] {
        let out = ctx.run(&["build", "--platform", platform]);
        assert!(out.status.success(), "{platform}: {}", stderr(&out));
    }
    let amd64 = shared.toolchains.join("pg18-amd64");
    check(&PgServer::start(&amd64, &amd64, &artifacts(ctx, "amd64")));
    let arm64 = shared.toolchains.join("pg18-arm64");
    check(&PgServer::start(&arm64, &amd64, &artifacts(ctx, "arm64")));
}

#[test]
fn cmake_meson_make_and_sql_kinds_build_and_load_on_both_platforms() {
    shared();
    build_and_check(&project());
}

#[test]
fn a_cargo_pgrx_source_without_cargo_lock_is_a_clear_error() {
    shared();
    let ctx = TestContext::new();
    // A Cargo package that does not pin its crates: builds are offline and `--locked`.
    let commit = ctx.commit_fixture(
        "azb_sql",
        &[(
            "Cargo.toml",
            "[package]\nname = \"azb_sql\"\nversion = \"1.0.0\"\nedition = \"2021\"\n",
        )],
    );
    let text = format!(
        "Recipe(name: \"azb_sql\", kind: Extension, source: Git(url: \"{UPSTREAM}azb_sql\", commit: \"{commit}\"), build: CargoPgrx(pgrx: \"0.16.1\"))\n"
    );
    fs_err::write(ctx.recipe_path("azb_sql"), text).unwrap();
    let out = ctx.run(&["build", "--platform", "amd64"]);
    // Found before any build (and before cargo-pgrx is installed): the source is the
    // user's input, so exit code 2.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("`azb_sql` builds with cargo-pgrx, but its source has no Cargo.lock in `.`"),
        "{text}"
    );
    assert!(
        text.contains("help: builds are offline and `--locked`"),
        "{text}"
    );
    assert!(
        !ctx.store().join("tools").exists(),
        "nothing installed for a bad source"
    );
}

#[test]
fn every_build_kind_builds_in_builder_containers_and_loads_on_both_platforms() {
    shared();
    let ctx = project();
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    build_and_check(&ctx);
}
