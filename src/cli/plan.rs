//! `azb plan`: each derivation with its hash, whether the store has it (else whether a
//! substituter has a trusted entry for it), and what changed since the last build. Reads
//! only: no build, no store writes; the network only to ask configured substituters about
//! what the store lacks.

use serde::Serialize;

use super::Failure;
use super::args::PlanArgs;
use super::settings::{self, GlobalSettings};
use crate::drv::{DrvHash, Planned};
use crate::graph::Graph;
use crate::remote::Remote;
use crate::store::Store;

/// One row of the plan.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    platform: String,
    hash: String,
    /// `cached`, `substitute` or `build`.
    status: &'static str,
    /// The substituter it would come from.
    from: Option<String>,
    /// The builder identity (`docker:…` for builder containers, `host:…` for the host).
    builder: String,
    /// The derivation of the last build of this recipe on this platform, if any.
    previous: Option<String>,
    /// Inputs that differ from the previous derivation (`new` when there was none).
    changed: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Output {
    derivations: Vec<Row>,
}

/// Runs `azb plan`.
pub fn run(global: &GlobalSettings, args: &PlanArgs) -> Result<(), Failure> {
    let project = settings::load_project(global)?;
    let graph = Graph::resolve(&project.recipes, &project.image.recipes).map_err(Failure::input)?;
    let platforms = settings::platforms(args.platform, &project)?;
    let (_, plan) = settings::plan(&project, &graph, &platforms)?;
    let store = global.store()?;
    let remote = global.remote()?;
    let mut rows = Vec::new();
    for platform in &platforms {
        let last = store.last_build(*platform).map_err(Failure::environment)?;
        for planned in plan.for_platform(*platform) {
            rows.push(row(
                &store,
                &remote,
                planned,
                last.get(planned.drv.name.as_str()).copied(),
            )?);
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&Output { derivations: rows })
            .expect("plan rows serialise");
        println!("{text}");
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn row(
    store: &Store,
    remote: &Remote,
    planned: &Planned<'_>,
    previous: Option<DrvHash>,
) -> Result<Row, Failure> {
    let cached = store
        .realisation(&planned.hash)
        .map_err(Failure::environment)?
        .is_some();
    let from = match cached || remote.is_empty() {
        true => None,
        false => remote
            .find(&planned.hash, &|message| eprintln!("warning: {message}"))
            .map(|found| found.url),
    };
    let changed = match previous {
        None => vec!["new".to_owned()],
        Some(old) if old == planned.hash => Vec::new(),
        Some(old) => match store.derivation(&old).map_err(Failure::environment)? {
            Some(old_drv) => planned.drv.changed_inputs(&old_drv),
            None => vec!["unknown (no record of the previous derivation)".to_owned()],
        },
    };
    Ok(Row {
        name: planned.drv.name.to_string(),
        platform: planned.drv.platform.to_string(),
        hash: planned.hash.to_string(),
        status: match (cached, &from) {
            (true, _) => "cached",
            (false, Some(_)) => "substitute",
            (false, None) => "build",
        },
        from,
        builder: planned.drv.builder.to_string(),
        previous: previous.map(|h| h.to_string()),
        changed,
    })
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<10} {:<12} {:<width$} {:<12} CHANGED",
        "STATUS", "PLATFORM", "NAME", "HASH"
    );
    for r in rows {
        let mut changed = if r.changed.is_empty() {
            "-".to_owned()
        } else {
            r.changed.join(", ")
        };
        if let Some(url) = &r.from {
            changed.push_str(&format!(" (from {url})"));
        }
        println!(
            "{:<10} {:<12} {:<width$} {:<12} {changed}",
            r.status,
            r.platform,
            r.name,
            &r.hash[..12]
        );
    }
}
