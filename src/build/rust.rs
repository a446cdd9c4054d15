//! The Rust toolchain of cargo-pgrx builds: the one the `rustc` on azb's PATH belongs to,
//! its identity (which joins the builder identity of Rust extensions), the Rust target of
//! each platform, and which of its files a builder container carries.
//!
//! Owns finding and describing the toolchain; never runs cargo (pgrx/) nor makes images
//! (builder.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::Error;
use crate::graph::Graph;
use crate::recipe::{Build, Platform, RecipeName};

/// What to do when no Rust toolchain is found.
const INSTALL_RUST: &str =
    "install Rust with rustup (https://rustup.rs) so that `rustc` is on PATH";

/// The stdout of `command` (a rustc query), or what went wrong, naming it.
fn stdout_of(command: &mut Command) -> Result<Vec<u8>, String> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = command
        .output()
        .map_err(|e| format!("`{shown}` cannot run ({e})"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The Rust toolchain cargo-pgrx builds use: the one the `rustc` on azb's PATH belongs to.
#[derive(Debug, Clone)]
pub struct RustToolchain {
    /// `rustc --print sysroot`; its bin/ holds rustc and cargo.
    pub sysroot: PathBuf,
}

impl RustToolchain {
    /// Finds the toolchain once per process.
    pub(super) fn find() -> Result<&'static RustToolchain, String> {
        static FOUND: OnceLock<Result<RustToolchain, String>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let out = stdout_of(Command::new("rustc").args(["--print", "sysroot"]))?;
                let sysroot = PathBuf::from(String::from_utf8_lossy(&out).trim());
                let toolchain = RustToolchain { sysroot };
                for tool in [toolchain.rustc(), toolchain.cargo()] {
                    if !tool.is_file() {
                        return Err(format!("`{}` is missing", tool.display()));
                    }
                }
                Ok(toolchain)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The compiler.
    pub fn rustc(&self) -> PathBuf {
        self.sysroot.join("bin/rustc")
    }

    /// Cargo of the same toolchain.
    pub fn cargo(&self) -> PathBuf {
        self.sysroot.join("bin/cargo")
    }

    /// Whether the standard library of `target` is installed.
    pub(super) fn has_target(&self, target: &str) -> bool {
        self.sysroot
            .join("lib/rustlib")
            .join(target)
            .join("lib")
            .is_dir()
    }
}

/// The Rust target triple of a platform.
pub fn rust_target(platform: Platform) -> &'static str {
    match platform {
        Platform::Amd64 => "x86_64-unknown-linux-gnu",
        Platform::Arm64 => "aarch64-unknown-linux-gnu",
    }
}

/// The identity of the Rust compiler cargo-pgrx builds use, which joins the builder
/// identity of their derivations: `rust:` + blake3 of `rustc -vV` (release, commit hash,
/// host, LLVM version), so a new compiler rebuilds Rust extensions and nothing else.
/// `name` is a recipe that needs it (for the error).
pub fn rust_identity(name: &RecipeName) -> Result<String, Error> {
    // Asked once per process (`recipe bump` plans twice).
    static IDENTITY: OnceLock<Result<String, String>> = OnceLock::new();
    let found = IDENTITY.get_or_init(|| {
        let rust = RustToolchain::find()?;
        let out = stdout_of(Command::new(rust.rustc()).arg("-vV"))?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"azb-rust-toolchain\0");
        hasher.update(&out);
        Ok(format!("rust:{}", hasher.finalize().to_hex()))
    });
    found.clone().map_err(|problem| Error::Rust {
        name: name.clone(),
        problem,
        hint: INSTALL_RUST.into(),
    })
}

/// The Rust compiler identity a plan of `graph` needs: only Rust (cargo-pgrx) extensions
/// depend on the compiler, so a graph without one needs none (nor a Rust toolchain).
pub fn rust_identity_for(graph: &Graph<'_>) -> Result<Option<String>, Error> {
    graph
        .order
        .iter()
        .find(|r| matches!(r.recipe.build, Build::CargoPgrx { .. }))
        .map(|r| rust_identity(&r.recipe.name))
        .transpose()
}

/// The platform of this machine, if it is one azb builds for.
pub(super) fn host_platform() -> Option<Platform> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Platform::Amd64),
        "aarch64" => Some(Platform::Arm64),
        _ => None,
    }
}

/// The Rust toolchain for building `name` for `platform`, with that platform's standard
/// library.
pub(super) fn rust_for(
    name: &RecipeName,
    platform: Platform,
) -> Result<&'static RustToolchain, Error> {
    let rust = RustToolchain::find().map_err(|problem| Error::Rust {
        name: name.clone(),
        problem,
        hint: INSTALL_RUST.into(),
    })?;
    let target = rust_target(platform);
    if !rust.has_target(target) {
        return Err(Error::Rust {
            name: name.clone(),
            problem: format!(
                "the Rust standard library for {target} is not installed in `{}`",
                rust.sysroot.display()
            ),
            hint: format!("rustup target add {target}"),
        });
    }
    Ok(rust)
}

/// Where a builder container carries the Rust toolchain.
pub const GUEST_SYSROOT: &str = "/opt/rust";

impl RustToolchain {
    /// The files of the toolchain a builder container needs to build for `targets`,
    /// relative to the sysroot: rustc, cargo and rustfmt (pgrx formats its generated
    /// bindings), the compiler's libraries, and the standard library of each target (no
    /// documentation, sources or other tools).
    /// A missing part is `Err((problem, hint))`.
    pub fn builder_files(&self, targets: &[&str]) -> Result<Vec<PathBuf>, (String, String)> {
        let mut files = Vec::new();
        for tool in ["rustc", "cargo", "rustfmt"] {
            let file = Path::new("bin").join(tool);
            if !self.sysroot.join(&file).is_file() {
                return Err((
                    format!("`{}` is missing", self.sysroot.join(&file).display()),
                    format!("rustup component add {tool}"),
                ));
            }
            files.push(file);
        }
        let lib = self.sysroot.join("lib");
        let unreadable = |e: std::io::Error| {
            (
                e.to_string(),
                "reinstall the toolchain with rustup".to_owned(),
            )
        };
        let entries = crate::fs::err::read_dir(&lib).map_err(unreadable)?;
        let mut libraries: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name();
            if name.to_string_lossy().contains(".so") {
                libraries.push(Path::new("lib").join(name));
            }
        }
        libraries.sort();
        files.extend(libraries);
        for target in targets {
            if !self.has_target(target) {
                return Err((
                    format!(
                        "the Rust standard library for {target} is not installed in `{}`",
                        self.sysroot.display()
                    ),
                    format!("rustup target add {target}"),
                ));
            }
            files.push(Path::new("lib/rustlib").join(target));
        }
        Ok(files)
    }
}
