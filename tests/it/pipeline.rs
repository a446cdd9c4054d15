//! Recipe to artifacts to image, end to end, on real fixtures.

use std::collections::BTreeMap;

use azb::store::{Lookup, Store};

use crate::context::{RecipeSpec, TestContext, shared, stderr};
use crate::postgres::{PgServer, check_fixtures};

/// name -> (status, changed) from `azb plan --json`.
pub fn plan_rows(
    ctx: &TestContext,
    platform: &str,
) -> BTreeMap<String, (String, Vec<String>, String)> {
    let plan = ctx.plan(platform);
    plan["derivations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let changed = d["changed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            (
                d["name"].as_str().unwrap().to_owned(),
                (
                    d["status"].as_str().unwrap().to_owned(),
                    changed,
                    d["hash"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// The artifact tars of the plan's derivations, read (and verified) through the store.
pub fn artifacts(ctx: &TestContext, platform: &str) -> Vec<Vec<u8>> {
    let store = Store::open(&ctx.store()).unwrap();
    plan_rows(ctx, platform)
        .values()
        .map(|(_, _, hash)| crate::context::stored(&store, hash).1)
        .collect()
}

pub fn built_count(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("azb: ") && l.contains(" built, "))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    line["azb: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn amd64_builds_load_into_postgres_and_rebuild_exactly_what_changed() {
    let shared = shared();
    let ctx = TestContext::new().with_fixtures();
    let rows = plan_rows(&ctx, "amd64");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.values()
            .all(|(status, changed, _)| status == "build" && changed == &["new"]),
        "{rows:?}"
    );

    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(built_count(&stderr(&out)), 3);
    let rows = plan_rows(&ctx, "amd64");
    assert!(
        rows.values()
            .all(|(status, changed, _)| status == "cached" && changed.is_empty()),
        "{rows:?}"
    );

    // Nothing changed: nothing builds.
    let again = ctx.run(&["build", "--platform", "amd64"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(built_count(&stderr(&again)), 0);

    let toolchain = shared.toolchains.join("pg18-amd64");
    let server = PgServer::start(&toolchain, &toolchain, &artifacts(&ctx, "amd64"));
    check_fixtures(&server);
    drop(server);

    // Re-pin azb_hello: it and its dependent rebuild, azb_sql does not.
    let commit = ctx.commit_fixture("azb_hello", &[("CHANGES", "1.0.1\n")]);
    ctx.write_recipe(RecipeSpec {
        name: "azb_hello",
        commit,
        depends: &[],
        enabled: true,
    });
    let rows = plan_rows(&ctx, "amd64");
    assert_eq!(rows["azb_hello"].0, "build");
    assert_eq!(rows["azb_hello"].1, ["commit"]);
    assert_eq!(rows["azb_dep"].0, "build");
    assert_eq!(rows["azb_dep"].1, ["deps.azb_hello"]);
    assert_eq!(rows["azb_sql"].0, "cached");
    assert!(rows["azb_sql"].1.is_empty());
    let rebuilt = ctx.run(&["build", "--platform", "amd64"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(built_count(&stderr(&rebuilt)), 2);
}

#[test]
fn arm64_artifacts_are_aarch64_and_load_into_postgres_under_qemu() {
    let shared = shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.ok(&["build", "--platform", "arm64"]);
    let tars = artifacts(&ctx, "arm64");
    let mut shared_objects = 0;
    for tar in &tars {
        for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if path.ends_with(".so") {
                let mut header = [0u8; 20];
                std::io::Read::read_exact(&mut entry, &mut header).unwrap();
                assert_eq!(
                    azb::layer::elf::machine(&header),
                    Some(183),
                    "{path} is not aarch64"
                );
                shared_objects += 1;
            }
        }
    }
    assert_eq!(shared_objects, 2);
    let server = PgServer::start(
        &shared.toolchains.join("pg18-arm64"),
        &shared.toolchains.join("pg18-amd64"),
        &tars,
    );
    assert!(
        server.psql("SELECT version()").contains("aarch64"),
        "not the arm64 server"
    );
    check_fixtures(&server);
}

#[test]
fn a_failing_build_shows_its_log_tail_and_keep_going_finishes_the_rest() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let commit = ctx.commit_fixture("azb_broken", &[]);
    ctx.write_recipe(RecipeSpec {
        name: "azb_broken",
        commit,
        depends: &[],
        enabled: true,
    });
    let out = ctx.run(&[
        "build",
        "--platform",
        "amd64",
        "--keep-going",
        "--jobs",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("building `azb_broken` for linux/amd64 failed at `make`"),
        "{err}"
    );
    assert!(
        err.contains("azb_broken_marker_in_log"),
        "log tail missing:\n{err}"
    );
    let log = err
        .lines()
        .find_map(|l| l.split_once("full log: ").map(|(_, path)| path.trim()))
        .expect("log path");
    assert!(
        fs_err::read_to_string(log)
            .unwrap()
            .contains("this_is_not_c")
    );
    let rows = plan_rows(&ctx, "amd64");
    assert_eq!(rows["azb_broken"].0, "build");
    for name in ["azb_hello", "azb_dep", "azb_sql"] {
        assert_eq!(
            rows[name].0, "cached",
            "{name} should have been built with --keep-going"
        );
    }
}

#[test]
fn a_commit_missing_upstream_is_an_input_error() {
    shared();
    let ctx = TestContext::new();
    ctx.commit_fixture("azb_sql", &[]);
    let missing = "1111111111111111111111111111111111111111";
    ctx.write_recipe(RecipeSpec {
        name: "azb_sql",
        commit: missing.into(),
        depends: &[],
        enabled: true,
    });
    let before = fs_err::read(ctx.recipe_path("azb_sql")).unwrap();
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "commit {missing} is not in `https://fixtures.invalid/azb_sql`"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs_err::read(ctx.recipe_path("azb_sql")).unwrap(), before);
    assert_eq!(
        fs_err::read_dir(ctx.store().join("realisations"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_corrupted_object_is_quarantined_and_rebuilt() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.ok(&["build", "--platform", "amd64"]);
    let hash = plan_rows(&ctx, "amd64")["azb_sql"].2.clone();
    let store = Store::open(&ctx.store()).unwrap();
    let record = store.realisation(&hash.parse().unwrap()).unwrap().unwrap();
    let object = store.layout().object(&record.object);
    let mut bytes = fs_err::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs_err::write(&object, &bytes).unwrap();

    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the object {} of `", record.object)) && err.contains("was damaged"),
        "{err}"
    );
    assert_eq!(built_count(&err), 1);
    assert!(
        store
            .layout()
            .quarantine(&record.object.to_string())
            .is_file()
    );
    let Lookup::Hit(again) = store.lookup(&hash.parse().unwrap()).unwrap() else {
        panic!("not rebuilt")
    };
    assert_eq!(
        again.object, record.object,
        "the rebuild is bit-for-bit the same artifact"
    );

    // An empty realisation (a crash of another tool, a full disk) and a damaged layer
    // blob: plan says build, build quarantines and rebuilds, exit 0.
    let realisation = store.layout().realisation(&hash.parse().unwrap());
    fs_err::write(&realisation, b"").unwrap();
    assert_eq!(plan_rows(&ctx, "amd64")["azb_sql"].0, "build");
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the realisation of `azb_sql`"), "{err}");
    assert_eq!(built_count(&err), 1);
    fs_err::write(store.layer_path(&again), b"garbage").unwrap();
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the layer sha256:{} of `azb_sql`",
            again.layer.digest
        )),
        "{err}"
    );
    assert_eq!(built_count(&err), 1);
    assert_eq!(
        fs_err::read(store.layer_path(&again)).unwrap().len() as u64,
        again.layer.size
    );
}

#[test]
fn plan_needs_no_network_and_writes_nothing_but_the_store_skeleton() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    // Upstreams unreachable: plan must not care.
    let out = ctx
        .azb()
        .args(["plan", "--platform", "all"])
        .env(
            "AZB_SOURCE_MIRRORS",
            "https://fixtures.invalid/=/nonexistent/",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let filtered: Vec<String> = table
        .lines()
        .map(|l| {
            l.split_whitespace()
                .enumerate()
                .map(|(i, w)| if i == 3 && w.len() == 12 { "[HASH]" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    insta::assert_snapshot!(filtered.join("\n"));
    for dir in ["sources", "objects", "realisations", "logs"] {
        assert_eq!(
            fs_err::read_dir(ctx.store().join(dir)).unwrap().count(),
            0,
            "{dir} was written by plan"
        );
    }
}

#[test]
fn a_docker_archive_of_two_platforms_is_refused_before_building() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let out = ctx.run(&[
        "build",
        "--platform",
        "all",
        "--output",
        "docker-archive:x.tar",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a docker-archive holds one platform"),
        "{}",
        stderr(&out)
    );
    assert!(!ctx.store().exists(), "nothing may be built or stored");
    let bad = ctx.run(&["build", "--output", "tarball:x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected oci:DIR or docker-archive:FILE"),
        "{}",
        stderr(&bad)
    );
}

/// The SQL script the netcheck fixture installed: what its build saw of the network.
fn netcheck(ctx: &TestContext, network: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let commit = ctx.commit_fixture("azb_netcheck", &[]);
    ctx.write_recipe_with_flags(
        RecipeSpec::new("azb_netcheck", commit),
        &[&format!("PROBE_PORT={port}")],
    );
    let mut cmd = ctx.azb();
    cmd.args(["build", "--platform", "amd64"]);
    if network {
        cmd.env("AZB_BUILD_NETWORK", "1");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tar = artifacts(ctx, "amd64").pop().unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut script = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("azb_netcheck--1.0.sql") {
            std::io::Read::read_to_string(&mut entry, &mut script).unwrap();
        }
    }
    script
}

#[test]
fn builds_have_no_network_unless_allowed() {
    shared();
    let isolated = TestContext::new();
    assert_eq!(netcheck(&isolated, false).trim(), "-- network: unreachable");
    // The probe itself works: with the network allowed it connects.
    let open = TestContext::new();
    assert_eq!(netcheck(&open, true).trim(), "-- network: reachable");
}

#[test]
fn waiting_on_a_derivation_another_process_builds_says_so() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let hash = plan_rows(&ctx, "amd64")["azb_sql"].2.clone();
    let lock_path = ctx.store().join("locks").join(format!("{hash}.lock"));
    fs_err::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = fs_err::File::create(&lock_path).unwrap().into_parts().0;
    held.lock().unwrap();
    let mut child = ctx
        .azb()
        .args(["build", "--platform", "amd64"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (reading its stderr) until it says what it waits for; then let it go.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let said = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("waiting for"))
        .expect("azb says it is waiting");
    assert!(said.contains(&format!("{hash}.lock")), "{said}");
    held.unlock().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("azb: 3 built")), "{rest:?}");
}
