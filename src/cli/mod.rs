//! The command line: clap parsing (`args`), resolving settings (`settings`), one file per
//! command, progress drawing (`progress`). Commands call the library and render; stdout
//! carries data only, everything else goes to stderr.
//!
//! Owns exit codes: 0 success, 1 a build failed, 2 bad input (recipes, arguments),
//! 3 the environment (files, tools, git, network), 4 an internal error.

mod args;
mod autoconfig;
mod build;
mod cache;
mod gen_files;
mod lock;
mod plan;
mod progress;
mod recipe;
mod settings;
mod stack;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Why a command failed, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A derivation failed to build.
    Build,
    /// Recipes, the image definition or arguments are wrong.
    Input,
    /// Files, tools, git or the network failed.
    Environment,
    /// A bug in azb.
    Internal,
}

/// A failed command: its kind and the report to show.
#[derive(Debug)]
pub struct Failure {
    /// Decides the exit code.
    pub kind: FailureKind,
    /// What to show on stderr (empty when already shown).
    pub report: Option<miette::Report>,
}

impl Failure {
    fn new(kind: FailureKind, report: miette::Report) -> Self {
        Self {
            kind,
            report: Some(report),
        }
    }

    /// Bad input.
    pub fn input(e: impl Into<miette::Report>) -> Self {
        Self::new(FailureKind::Input, e.into())
    }

    /// The environment failed.
    pub fn environment(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::plain(FailureKind::Environment, e)
    }

    /// An error of the given kind that says its own help (and causes).
    pub fn diagnostic(
        kind: FailureKind,
        e: impl miette::Diagnostic + Send + Sync + 'static,
    ) -> Self {
        Self::new(kind, miette::Report::new(e))
    }

    /// A plain error (no source span) of the given kind, with its causes.
    pub fn plain(kind: FailureKind, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(
            kind,
            miette::Report::new_boxed(Box::new(Plain(Box::new(e)))),
        )
    }

    /// A build failed; the failures were already printed.
    pub fn build_reported() -> Self {
        Self {
            kind: FailureKind::Build,
            report: None,
        }
    }

    fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.kind {
            FailureKind::Build => 1,
            FailureKind::Input => 2,
            FailureKind::Environment => 3,
            FailureKind::Internal => 4,
        })
    }
}

/// Shows a plain error (with its chain of causes) through miette.
#[derive(Debug)]
struct Plain(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Plain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl miette::Diagnostic for Plain {}

/// Runs azb with the process arguments; returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let color = std::io::stderr().is_terminal();
    let _ = miette::set_hook(Box::new(move |_| {
        let theme = if color {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        // Lines are wrapped for a terminal only, and never inside a word: a path or a log
        // line copied from a report must stay whole.
        Box::new(
            miette::GraphicalReportHandler::new_themed(theme)
                .with_context_lines(2)
                .with_wrap_lines(color)
                .with_break_words(false),
        )
    }));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(report) = &failure.report {
                eprintln!("{report:?}");
            }
            failure.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let global = || settings::GlobalSettings::resolve(&cli.global);
    match cli.command {
        args::Command::Build(ref args) => build::run(&global()?, args),
        args::Command::Plan(ref args) => plan::run(&global()?, args),
        args::Command::Recipe(ref command) => recipe::run(&global()?, command),
        args::Command::Gen { check } => gen_files::run(&global()?, check),
        args::Command::Lock(args::LockCommand::Update) => lock::update(&global()?),
        args::Command::Cache(ref command) => cache::run(&global()?, command),
        args::Command::Stack(args::StackCommand::Load {
            ref stack,
            platform,
            jobs,
        }) => stack::load(&global()?, stack, platform, jobs),
        // Needs no project.
        args::Command::Autoconfig(ref args) => autoconfig::run(args),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "azb=debug,info",
        (false, _) => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(tracing_indicatif::IndicatifWriter::<
            tracing_indicatif::writer::Stderr,
        >::new(progress::stderr_bars()))
        .with_target(false)
        .without_time()
        .try_init();
}
