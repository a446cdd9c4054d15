//! The cargo of the network phases of cargo-pgrx builds (installing cargo-pgrx, fetching
//! crates): the toolchain's cargo with the store's cargo home and, of azb's environment,
//! only what reaching a registry needs; run with its output in a log.
//!
//! Owns those cargo invocations' environment; never runs a build step.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::fs::FsError;
use crate::store::Store;

use crate::build::executor::{Ran, log_tail, run_to_log};
use crate::build::rust::RustToolchain;

/// Environment variables the network phases (cargo install, cargo fetch) pass through from
/// azb's own environment: proxies, certificates and cargo's network and registry settings.
const NETWORK_PASSTHROUGH: [&str; 9] = [
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
const NETWORK_PASSTHROUGH_PREFIXES: [&str; 4] = [
    "CARGO_HTTP_",
    "CARGO_NET_",
    "CARGO_REGISTRIES_",
    "CARGO_SOURCE_",
];

/// A cargo command for the network phases: the toolchain's cargo, the store's cargo home,
/// and of azb's environment only what reaching a registry needs.
pub(super) fn cargo_command(store: &Store, rust: &RustToolchain, work: &Path) -> Command {
    let mut cmd = Command::new(rust.cargo());
    cmd.env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin",
                rust.sysroot.join("bin").display()
            ),
        )
        .env("HOME", work)
        .env("TMPDIR", work)
        .env("CARGO_HOME", store.layout().cargo_home())
        .env("RUSTC", rust.rustc())
        .env("CARGO_TERM_COLOR", "never")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    for (key, value) in std::env::vars_os() {
        let Some(key_text) = key.to_str() else {
            continue;
        };
        if NETWORK_PASSTHROUGH.contains(&key_text)
            || NETWORK_PASSTHROUGH_PREFIXES
                .iter()
                .any(|p| key_text.starts_with(p))
        {
            cmd.env(&key, value);
        }
    }
    cmd
}

/// How a cargo command of a network phase failed.
pub(super) struct Failed {
    /// Its exit status, or why it could not start.
    pub status: String,
    /// The last lines of its output, indented.
    pub tail: String,
}

/// Runs `cmd` with its output appended to `log`; the inner Err says how it failed.
pub(super) fn run(cmd: Command, log: &Path) -> Result<Result<(), Failed>, FsError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let header = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| word.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(match run_to_log(cmd, &header, log)? {
        Ran::Succeeded => Ok(()),
        Ran::Failed(status) => Err(Failed {
            status,
            tail: log_tail(log, 25),
        }),
        Ran::NotStarted(e) => Err(Failed {
            status: format!("cannot run `{program}`: {e}"),
            tail: String::new(),
        }),
    })
}

/// A private directory under the store's tmp/.
pub(super) fn scratch(store: &Store, prefix: &str) -> Result<tempfile::TempDir, FsError> {
    let tmp = store.layout().tmp();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .map_err(|e| FsError::new("create a directory in", &tmp, e))
}
