//! `azb gen [--check]`: the files generated from the recipes, written or checked fresh.

use super::settings::{self, GlobalSettings};
use super::{Failure, FailureKind};
use crate::fs::{FsError, err, write_atomic};
use crate::graph::Graph;
use crate::recipe::RecipeSelection;
use crate::runtime;

/// Runs `azb gen`.
pub fn run(global: &GlobalSettings, check: bool) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let all: Vec<_> = project
        .recipes
        .recipes
        .values()
        .map(|l| &l.recipe)
        .collect();
    let graph = Graph::resolve(&project.recipes, &RecipeSelection::All).map_err(Failure::input)?;
    let image: Vec<_> = graph.order.iter().map(|l| &l.recipe).collect();
    let files = [
        (
            "flake-free-docs/EXTENSIONS.md",
            runtime::extensions_md(&all),
        ),
        (
            "stacks/runtime/initdb.d/01-extensions.sql",
            runtime::extensions_sql(&image),
        ),
        (
            "stacks/runtime/sbom.cdx.json",
            runtime::sbom_json(&project.image, &image, None),
        ),
    ];
    let mut stale = Vec::new();
    for (relative, content) in &files {
        let path = project.root.join(relative);
        let current = err::read_to_string(&path).ok();
        if current.as_deref() == Some(content.as_str()) {
            continue;
        }
        if check {
            stale.push(*relative);
        } else {
            let dir = path.parent().expect("generated files live in a directory");
            err::create_dir_all(dir)
                .map_err(|e| Failure::environment(FsError::new("create directory", dir, e)))?;
            write_atomic(dir, &path, content.as_bytes()).map_err(Failure::environment)?;
            eprintln!("azb: wrote {relative}");
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    for relative in &stale {
        eprintln!("error: {relative} is stale; run `azb gen` and commit it");
    }
    Err(Failure {
        kind: FailureKind::Input,
        report: None,
    })
}
