//! `azb cache ...`: making a signing key, pushing the last build to a remote cache, and
//! what the store holds. stdout is data: the public key, one line per pushed derivation,
//! the info as JSON.

use super::args::CacheCommand;
use super::settings::{self, GlobalSettings};
use super::{Failure, FailureKind};
use crate::remote::{self, PushOutcome, SecretKey};
use crate::store::Check;

/// Runs `azb cache ...`.
pub fn run(global: &GlobalSettings, command: &CacheCommand) -> Result<(), Failure> {
    match command {
        CacheCommand::Keygen { name, out } => {
            let key = SecretKey::generate(name).map_err(|e| match e {
                remote::Error::BadKey { .. } => Failure::input(e),
                other => Failure::environment(other),
            })?;
            let path = out
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from(format!("{name}.key")));
            key.write_new(&path).map_err(|e| match e {
                remote::Error::Fs(fs) if fs.source.kind() == std::io::ErrorKind::AlreadyExists => {
                    Failure::input(miette::miette!(
                        help = "choose another --out; an existing key file is never overwritten",
                        "the key file `{}` exists",
                        path.display()
                    ))
                }
                other => Failure::environment(other),
            })?;
            println!("{}", key.public());
            Ok(())
        }
        CacheCommand::Push { to, platform } => push(global, to.as_deref(), *platform),
        CacheCommand::Verify { repair } => verify(global, *repair),
        CacheCommand::Gc { grace } => {
            let project = settings::load_project(global)?;
            let graph = crate::graph::Graph::resolve(&project.recipes, &project.image.recipes)
                .map_err(Failure::input)?;
            let platforms = settings::platforms(super::args::PlatformArg::All, &project)?;
            let (_, plan) = settings::plan(&project, &graph, &platforms)?;
            let store = global.store()?;
            let mut keep: std::collections::BTreeSet<_> =
                plan.items.iter().map(|p| p.hash).collect();
            for platform in platforms {
                keep.extend(
                    store
                        .last_build(platform)
                        .map_err(Failure::environment)?
                        .into_values(),
                );
            }
            let report = store
                .gc(&keep, std::time::Duration::from_secs(*grace))
                .map_err(Failure::environment)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("a report serialises")
            );
            Ok(())
        }
        CacheCommand::Info => {
            let store = global.store()?;
            let stats = store.stats().map_err(Failure::environment)?;
            let config = global.cache_config()?;
            let signing = crate::env::path(crate::env::SIGNING_KEY_FILE)
                .map(|path| SecretKey::read(&path).map(|k| k.public().to_string()))
                .transpose()
                .map_err(Failure::input)?;
            let info = serde_json::json!({
                "store": store.layout().root(),
                "stats": stats,
                "substituters": config.substituters,
                "trusted_keys": config.trusted_keys,
                "push_to": config.push_target(None),
                "signing_key": signing,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&info).expect("info serialises")
            );
            Ok(())
        }
    }
}

fn push(
    global: &GlobalSettings,
    to: Option<&str>,
    platform: super::args::PlatformArg,
) -> Result<(), Failure> {
    let config = global.cache_config()?;
    let Some(url) = config.push_target(to) else {
        return Err(Failure::input(miette::miette!(
            help = "pass --to URL, or list substituters (or push_to) in cache.ron",
            "no remote cache to push to"
        )));
    };
    let Some(key_file) = crate::env::path(crate::env::SIGNING_KEY_FILE) else {
        return Err(Failure::input(miette::miette!(
            help = "set AZB_SIGNING_KEY_FILE to a key file from `azb cache keygen NAME`; a machine without a signing key only reads",
            "pushing needs a signing key"
        )));
    };
    let key = SecretKey::read(&key_file).map_err(|e| match e {
        remote::Error::BadKey { .. } => Failure::input(e),
        other => Failure::environment(other),
    })?;
    let project = settings::load_project(global)?;
    let platforms = settings::platforms(platform, &project)?;
    let store = global.store()?;
    let mut drvs = Vec::new();
    for platform in platforms {
        let last = store.last_build(platform).map_err(Failure::environment)?;
        drvs.extend(last.into_values());
    }
    let target = remote::open(&url).map_err(|e| match e {
        remote::Error::BadUrl { .. } => Failure::input(e),
        other => Failure::environment(other),
    })?;
    let pushed =
        remote::push(&store, target.as_ref(), &key, &drvs).map_err(Failure::environment)?;
    let mut differing = 0;
    for (drv, outcome) in &pushed {
        let word = match outcome {
            PushOutcome::Uploaded => "uploaded",
            PushOutcome::Present => "present",
            PushOutcome::Missing => "missing",
            PushOutcome::Differs { remote } => {
                differing += 1;
                eprintln!(
                    "error: {url} holds another output for {drv} ({} {}): object {} there; this build is not deterministic, nothing was overwritten",
                    remote.name, remote.platform, remote.object
                );
                "differs"
            }
        };
        println!("{word} {drv}");
    }
    if differing > 0 {
        return Err(Failure::plain(
            FailureKind::Build,
            std::io::Error::other(format!(
                "{differing} derivation(s) differ from what {url} holds"
            )),
        ));
    }
    Ok(())
}

fn verify(global: &GlobalSettings, repair: bool) -> Result<(), Failure> {
    let store = global.store()?;
    let remote = if repair { Some(global.remote()?) } else { None };
    let (mut sound, mut damaged) = (0, 0);
    for drv in store.realised().map_err(Failure::environment)? {
        let damage = match store.check(&drv).map_err(Failure::environment)? {
            Check::Sound(_) => {
                sound += 1;
                continue;
            }
            Check::Missing => continue,
            Check::Damaged(damage) => damage,
        };
        let Some(remote) = &remote else {
            damaged += 1;
            println!("damaged {drv} {}", damage.what);
            continue;
        };
        let derivation = store.derivation(&drv).map_err(Failure::environment)?;
        store
            .quarantine_damage(&drv, &damage)
            .map_err(Failure::environment)?;
        let warn = |message: &str| eprintln!("warning: {message}");
        match derivation.and_then(|d| remote.substitute(&store, &d, &warn)) {
            Some(found) => println!("repaired {drv} {} from {}", damage.what, found.url),
            None => println!(
                "quarantined {drv} {} (the next build rebuilds it)",
                damage.what
            ),
        }
    }
    eprintln!("azb: {sound} sound, {damaged} damaged");
    if damaged > 0 {
        return Err(Failure::plain(
            FailureKind::Build,
            std::io::Error::other(format!(
                "{damaged} realisation(s) damaged; `azb cache verify --repair` quarantines them"
            )),
        ));
    }
    Ok(())
}
