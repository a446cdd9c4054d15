//! `azb autoconfig`: the settings the image's entrypoint would compute, by running that
//! same script (there is one implementation of the rules).

use super::args::AutoconfigArgs;
use super::{Failure, FailureKind};
use crate::runtime::{self, Autoconfig, AutoconfigError};

/// Runs `azb autoconfig`.
pub fn run(args: &AutoconfigArgs) -> Result<(), Failure> {
    let input = Autoconfig {
        memory_mb: args.memory.clone(),
        cpus: args.cpus.clone(),
        workload: args.workload.clone(),
        storage: args.storage.clone(),
    };
    let runtime::Settings {
        values: settings,
        warnings,
    } = match runtime::autoconfig(&input) {
        Ok(found) => found,
        Err(e @ AutoconfigError::Rejected { .. }) => {
            return Err(Failure::plain(FailureKind::Input, e));
        }
        Err(e) => return Err(Failure::environment(e)),
    };
    for warning in warnings {
        eprintln!("{warning}");
    }
    if args.json {
        let object: serde_json::Map<String, serde_json::Value> = settings
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&object).expect("settings serialise")
        );
    } else {
        for (name, value) in settings {
            println!("{name} = {value}");
        }
    }
    Ok(())
}
