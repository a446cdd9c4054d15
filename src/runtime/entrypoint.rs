//! The entrypoint script (stacks/runtime/azb-entrypoint.sh), carried in the image and run
//! by `azb autoconfig`: one implementation of the tuning rules, in POSIX sh.

use std::io::Write;
use std::process::{Command, Stdio};

use super::RuntimeFile;

/// The script, as the image carries it.
const SCRIPT: &str = include_str!("../../stacks/runtime/azb-entrypoint.sh");

/// Where the image carries it; also the image's entrypoint.
pub const ENTRYPOINT_PATH: &str = "/usr/local/bin/azb-entrypoint.sh";

/// The entrypoint as a runtime-layer file.
pub fn entrypoint_file() -> RuntimeFile {
    RuntimeFile {
        path: ENTRYPOINT_PATH.to_owned(),
        contents: SCRIPT.as_bytes().to_vec(),
        mode: 0o755,
    }
}

/// The inputs of `azb autoconfig`.
#[derive(Debug, Clone)]
pub struct Autoconfig {
    /// Memory in MB.
    pub memory_mb: String,
    /// CPUs.
    pub cpus: String,
    /// web, oltp, dw or mixed (the script warns about others and uses web).
    pub workload: Option<String>,
    /// ssd, hdd or san (the script warns about others and uses ssd).
    pub storage: Option<String>,
}

/// The script refused its input, or could not run.
#[derive(Debug, thiserror::Error)]
pub enum AutoconfigError {
    /// The script rejected the input (its message says why).
    #[error("{message}")]
    Rejected {
        /// What the script said.
        message: String,
    },
    /// `sh` could not be run.
    #[error("cannot run the entrypoint script with sh")]
    Spawn(#[source] std::io::Error),
}

/// What the script computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `name`, `value`, in the script's order.
    pub values: Vec<(String, String)>,
    /// Warnings it printed (unknown workload, ...).
    pub warnings: Vec<String>,
}

/// Runs the entrypoint's `--print` with `input` and nothing else of the caller's
/// environment.
pub fn autoconfig(input: &Autoconfig) -> Result<Settings, AutoconfigError> {
    let mut command = Command::new("sh");
    command
        .args(["-s", "--", "--print"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("POSTGRES_MEMORY", &input.memory_mb)
        .env("POSTGRES_CPUS", &input.cpus)
        // No image here: DESIGN.md's default preload list, as configured.
        .env("AZB_PG_LIBDIR", "")
        .env("AZB_PRELOAD_FILE", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(workload) = &input.workload {
        command.env("POSTGRES_WORKLOAD_TYPE", workload);
    }
    if let Some(storage) = &input.storage {
        command.env("POSTGRES_STORAGE_TYPE", storage);
    }
    let mut child = command.spawn().map_err(AutoconfigError::Spawn)?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(SCRIPT.as_bytes())
        .map_err(AutoconfigError::Spawn)?;
    let output = child.wait_with_output().map_err(AutoconfigError::Spawn)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = stderr
        .lines()
        .map(|l| l.strip_prefix("azb-entrypoint: ").unwrap_or(l).to_owned());
    if !output.status.success() {
        return Err(AutoconfigError::Rejected {
            message: lines.collect::<Vec<_>>().join("\n"),
        });
    }
    let values = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    Ok(Settings {
        values,
        warnings: lines.collect(),
    })
}
