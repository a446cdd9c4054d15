//! The example project (tests/fixtures/demo, built by scripts/example.sh) keeps working:
//! its recipes pin exactly the commits scripts/demo-upstreams.sh makes.

use std::process::Command;

use crate::context::{repo_root, shared, stderr};

#[test]
fn the_example_project_builds_from_the_demo_upstreams() {
    shared();
    let dir = tempfile::tempdir().unwrap();
    let upstreams = dir.path().join("up");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/demo-upstreams.sh"))
        .arg(&upstreams)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (name, commit) = line.split_once(' ').unwrap();
        let recipe = fs_err::read_to_string(
            repo_root().join(format!("tests/fixtures/demo/recipes/{name}.ron")),
        )
        .unwrap();
        assert!(
            recipe.contains(commit),
            "recipes/{name}.ron does not pin {commit}"
        );
    }
    let build = Command::new(env!("CARGO_BIN_EXE_azb"))
        .arg("--project")
        .arg(repo_root().join("tests/fixtures/demo"))
        .arg("--cache-dir")
        .arg(dir.path().join("store"))
        .args(["build", "--platform", "amd64"])
        .env(
            "AZB_SOURCE_MIRRORS",
            format!("https://example.invalid/azb-demo/={}/", upstreams.display()),
        )
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", stderr(&build));
    assert!(
        stderr(&build).contains("azb: 3 built"),
        "{}",
        stderr(&build)
    );
}
