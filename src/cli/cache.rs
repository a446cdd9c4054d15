//! `azb cache ...`: making a signing key, pushing the last build to a remote cache, and
//! what the store holds. stdout is data: the public key, one line per pushed derivation,
//! the info as JSON.

use super::args::CacheCommand;
use super::settings::{self, GlobalSettings};
use super::{Failure, FailureKind};
use crate::remote::{self, PushOutcome, SecretKey};

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
