//! The cargo-pgrx build kind, shown by tests/fixtures/extensions/azb_pgrx (a pgrx 0.16.1
//! extension written for the tests): azb fetches its locked crates before the build, builds
//! it offline with the pinned cargo-pgrx, and the artifact loads into a real PostgreSQL 18
//! server. cargo-pgrx and the crates come from the shared fixtures (scripts/fetch-pgrx.sh,
//! run by scripts/test-fixtures.sh) and are linked into each test's store, so only the
//! extension itself compiles here (minutes on two cores).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use azb::store::Store;

use crate::context::{TestContext, UPSTREAM, repo_root, shared, stderr};
use crate::postgres::{PgServer, check};

const PGRX: &str = "0.16.1";

/// A project with the azb_pgrx fixture built by cargo-pgrx `pgrx`.
fn project(pgrx: &str) -> TestContext {
    let ctx = TestContext::new();
    let commit = ctx.commit_fixture("azb_pgrx", &[]);
    let text = format!(
        "Recipe(name: \"azb_pgrx\", kind: Extension, source: Git(url: \"{UPSTREAM}azb_pgrx\", commit: \"{commit}\"), build: CargoPgrx(pgrx: \"{pgrx}\", features: [\"pg18\"], no_default_features: true), runtime: (create: true))\n"
    );
    fs_err::write(ctx.recipe_path("azb_pgrx"), text).unwrap();
    ctx
}

/// The shared tools directory of scripts/fetch-pgrx.sh.
fn tools() -> PathBuf {
    std::env::var_os("AZB_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("cache/tools"))
}

/// Lays the shared cargo-pgrx and crate cache into the store at `store` (hard links), as a
/// store that built pgrx extensions before would have them.
fn seed(store: &Path) {
    let tools = tools();
    let name = format!("cargo-pgrx-{PGRX}");
    let bin = store.join("tools").join(&name).join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    fs_err::hard_link(
        tools.join(&name).join("bin/cargo-pgrx"),
        bin.join("cargo-pgrx"),
    )
    .unwrap();
    let registry = store.join("cargo/registry");
    fs_err::create_dir_all(&registry).unwrap();
    for dir in ["index", "cache"] {
        check(
            Command::new("cp")
                .arg("-al")
                .arg(tools.join("cargo-home/registry").join(dir))
                .arg(registry.join(dir)),
            "link the shared crate cache",
        );
    }
}

/// The artifact tar of azb_pgrx for `platform` in the store at `store`.
fn artifact(ctx: &TestContext, store: &Path, platform: &str) -> (String, Vec<u8>) {
    let plan = ctx.plan(platform);
    let hash = plan["derivations"][0]["hash"].as_str().unwrap().to_owned();
    let (record, tar) = crate::context::stored(&Store::open(store).unwrap(), &hash);
    (record.object.to_string(), tar)
}

fn files(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type().is_file())
        .map(|e| e.path().unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn build(ctx: &TestContext, platform: &str) {
    let started = Instant::now();
    let out = ctx.run(&["build", "--platform", platform]);
    assert!(out.status.success(), "{platform}: {}", stderr(&out));
    eprintln!("azb_pgrx for {platform} built in {:.0?}", started.elapsed());
}

fn check_answer(server: &PgServer) {
    server.psql("CREATE EXTENSION azb_pgrx");
    assert_eq!(server.psql("SELECT azb_pgrx_answer()"), "107");
}

#[test]
fn a_pgrx_extension_builds_offline_and_loads_into_postgres_18() {
    let shared = shared();
    let ctx = project(PGRX);
    seed(&ctx.store());
    build(&ctx, "amd64");
    let (_, tar) = artifact(&ctx, &ctx.store(), "amd64");
    assert_eq!(
        files(&tar),
        [
            "lib/azb_pgrx.so",
            "licenses/azb_pgrx/LICENSE",
            "share/extension/azb_pgrx--1.0.0.sql",
            "share/extension/azb_pgrx.control",
        ]
    );
    let amd64 = shared.toolchains.join("pg18-amd64");
    check_answer(&PgServer::start(&amd64, &amd64, &[tar]));
}

#[test]
fn a_pgrx_extension_cross_builds_for_arm64_and_loads_under_qemu() {
    let shared = shared();
    let ctx = project(PGRX);
    seed(&ctx.store());
    build(&ctx, "arm64");
    let (_, tar) = artifact(&ctx, &ctx.store(), "arm64");
    assert!(files(&tar).contains(&"lib/azb_pgrx.so".to_owned()));
    let arm64 = shared.toolchains.join("pg18-arm64");
    let amd64 = shared.toolchains.join("pg18-amd64");
    check_answer(&PgServer::start(&arm64, &amd64, &[tar]));
}

/// A project building azb_pgrx in builder containers (bindgen needs clang).
fn project_in_builders() -> TestContext {
    let ctx = project(PGRX);
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    let recipe = ctx.recipe_path("azb_pgrx");
    let text = fs_err::read_to_string(&recipe).unwrap();
    fs_err::write(
        &recipe,
        text.replace(", runtime:", ", build_packages: [\"clang\"], runtime:"),
    )
    .unwrap();
    seed(&ctx.store());
    ctx
}

/// Builds azb_pgrx for `platform` in its builder container and loads it into PostgreSQL 18.
fn build_in_builder(platform: &str) {
    let shared = shared();
    let ctx = project_in_builders();
    let plan = ctx.plan(platform);
    let builder = plan["derivations"][0]["builder"].as_str().unwrap();
    assert!(
        builder.starts_with("docker:") && builder.contains("+rust:"),
        "{builder}"
    );
    build(&ctx, platform);
    let (_, tar) = artifact(&ctx, &ctx.store(), platform);
    assert!(files(&tar).contains(&"lib/azb_pgrx.so".to_owned()));
    let amd64 = shared.toolchains.join("pg18-amd64");
    let toolchain = shared.toolchains.join(format!("pg18-{platform}"));
    check_answer(&PgServer::start(&toolchain, &amd64, &[tar]));
}

/// The same extension in a builder container: the Rust toolchain joins the builder image,
/// cargo-pgrx and the store's crates are streamed in, and the build runs offline as the
/// unprivileged build user.
#[test]
fn a_pgrx_extension_builds_in_a_builder_container() {
    build_in_builder("amd64");
}

/// arm64 cross-compiled in the amd64 builder with the Rust toolchain. Another builder
/// image and another full compile of pgrx (about 20 minutes on two cores), so not part of
/// the default run: `cargo test --test it pgrx -- --ignored`.
#[test]
#[ignore = "slow: another builder image and a cross compile of pgrx (about 20 minutes)"]
fn a_pgrx_extension_cross_builds_for_arm64_in_a_builder_container() {
    build_in_builder("arm64");
}

/// Two builds in two cold stores (other work directories, other store paths) give the same
/// artifact. A second full compile of pgrx, so not part of the default run:
/// `cargo test --test it pgrx -- --ignored`.
#[test]
#[ignore = "slow: compiles pgrx twice (about 10 minutes on two cores)"]
fn a_pgrx_extension_builds_reproducibly_in_a_cold_store() {
    shared();
    let objects: Vec<String> = (0..2)
        .map(|_| {
            let ctx = project(PGRX);
            seed(&ctx.store());
            build(&ctx, "amd64");
            artifact(&ctx, &ctx.store(), "amd64").0
        })
        .collect();
    assert_eq!(objects[0], objects[1]);
}

#[test]
fn a_cargo_pgrx_version_that_cannot_be_installed_is_a_clear_error() {
    shared();
    let ctx = project("99.0.0");
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("cannot install cargo-pgrx 99.0.0 (for `azb_pgrx`): `cargo install` failed"),
        "{text}"
    );
    // The crate registry answers that there is no such version (offline, the network error shows).
    assert!(
        text.contains("`=99.0.0`") || text.contains("network"),
        "{text}"
    );
    assert!(
        text.contains("help: check that cargo-pgrx 99.0.0 exists"),
        "{text}"
    );
    assert!(!ctx.store().join("tools/cargo-pgrx-99.0.0").exists());
}

#[test]
fn a_cargo_pgrx_version_that_is_not_a_version_is_refused() {
    shared();
    let ctx = project("../0.16.1");
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`azb_pgrx` pins cargo-pgrx `../0.16.1`, which is not a version"),
        "{}",
        stderr(&out)
    );
}
