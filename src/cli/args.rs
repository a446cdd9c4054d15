//! The command line, as clap structs. Nothing here does anything.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// azb: build a production PostgreSQL 18 image from pinned recipes, through a
/// content-addressed store.
#[derive(Debug, Parser)]
#[command(name = "azb", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Project directory (holding recipes/ and stacks/); default: the nearest one above the
    /// current directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Image definition; default: stacks/image.ron in the project.
    #[arg(long, global = true, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Store directory; default: $AZB_CACHE_DIR, else cache/ in the project.
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// More output on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// An overlay applied after the image definition's (repeatable, in order).
    #[arg(long, global = true, value_name = "FILE")]
    pub overlay: Vec<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build what is missing from the store and assemble the image.
    Build(BuildArgs),
    /// Show each derivation: hash, cached or to build, and what changed since the last build.
    Plan(PlanArgs),
    /// Print the settings the image's entrypoint computes for a machine of this size.
    Autoconfig(AutoconfigArgs),
    /// Write the files generated from the recipes (EXTENSIONS.md, the init SQL).
    Gen {
        /// Write nothing; fail when a generated file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Look after the recipes: list, show, check, add, bump, outdated.
    #[command(subcommand)]
    Recipe(RecipeCommand),
    /// The package lock of the builder images (builders.lock).
    #[command(subcommand)]
    Lock(LockCommand),
    /// The remote cache: keys, pushing, and what the store holds.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The Compose stacks under stacks/.
    #[command(subcommand)]
    Stack(StackCommand),
}

/// `azb stack ...`.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Build every image the stack's compose.yml runs that an image definition of the
    /// project makes (the PostgreSQL image, PgBouncer, the exporter) and `docker load`
    /// them; prints each loaded reference.
    Load {
        /// The stack: a directory under stacks/ holding compose.yml (single, primary,
        /// replica).
        stack: String,
        /// The platform to build and load; default: the Docker engine's machine.
        #[arg(long, value_enum)]
        platform: Option<PlatformArg>,
        /// Builds to run at once; default: the number of CPUs.
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
    },
}

/// `azb cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Make a signing key: the secret one goes to a new file (mode 0600), the public one
    /// (to list in trusted_keys) to stdout.
    Keygen {
        /// The key's name (e.g. `ci-1`); signatures carry it.
        name: String,
        /// The secret key file to create; default: NAME.key here. Never overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign and upload what the last build holds (its derivations on every platform, or
    /// one), files first and records last, to --to, else push_to, else the first
    /// substituter. Needs AZB_SIGNING_KEY_FILE.
    Push {
        /// The remote cache (file:///DIR or s3://BUCKET/PREFIX).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Only this platform's last build.
        #[arg(long, value_enum, default_value = "all")]
        platform: PlatformArg,
    },
    /// What the store holds, and the remote cache settings.
    Info,
    /// Re-hash every object and layer the store's records name; report the damaged ones
    /// (exit 1). With --repair, move them to quarantine/ and fetch them again from the
    /// substituters where a trusted entry exists (else the next build rebuilds them).
    Verify {
        /// Quarantine what is damaged and substitute it again.
        #[arg(long)]
        repair: bool,
    },
    /// Delete what neither the current plan (every platform) nor the last builds need:
    /// their records, then objects and layer blobs nothing kept names. Files younger than
    /// --grace stay, so a build running meanwhile keeps what it just wrote.
    Gc {
        /// Seconds a file is kept after it was written.
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        grace: u64,
    },
}

/// `azb lock ...`.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Resolve the builders' Debian packages (every platform that builds in containers,
    /// every `build_packages` set of the enabled recipes) and write builders.lock.
    Update,
}

/// `azb recipe ...`.
#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// List the recipes.
    List(RecipeListArgs),
    /// Show one recipe and its derivation per platform.
    Show {
        /// The recipe.
        name: String,
    },
    /// Check every recipe rule; all problems at once.
    Check {
        /// Also verify through git that each tag still points at its pinned commit.
        #[arg(long)]
        online: bool,
    },
    /// List release tags upstream that are newer than each pinned tag.
    Outdated,
    /// Scaffold a new recipe from a repository: fetch the commit, detect the build kind,
    /// version, description and licence from the tree, write recipes/NAME.ron.
    Add(RecipeAddArgs),
    /// Re-pin a recipe to a commit or tag (resolved through git), then show what rebuilds.
    Bump {
        /// The recipe.
        name: String,
        /// A 40-hex commit or a tag of the recipe's repository.
        rev: String,
    },
}

/// `azb recipe add`.
#[derive(Debug, Args)]
pub struct RecipeAddArgs {
    /// The new recipe's name (lowercase letters, digits, `_`), usually the extension's.
    pub name: String,
    /// The upstream git repository.
    #[arg(long, value_name = "URL")]
    pub git: String,
    /// The commit to pin (40 hex), or a tag, which is pinned as the commit it names.
    #[arg(long, value_name = "SHA|TAG")]
    pub commit: String,
    /// Catalog category.
    #[arg(long, default_value = "misc")]
    pub category: String,
}

/// Recipe kinds for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Extensions.
    Extension,
    /// Tools.
    Tool,
    /// Builtin modules.
    Builtin,
}

/// `azb recipe list`.
#[derive(Debug, Args)]
pub struct RecipeListArgs {
    /// Only this kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Only this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only enabled recipes.
    #[arg(long, conflicts_with = "disabled")]
    pub enabled: bool,
    /// Only disabled recipes.
    #[arg(long)]
    pub disabled: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `azb autoconfig`.
#[derive(Debug, Args)]
pub struct AutoconfigArgs {
    /// Memory in MB (512 to 1048576).
    #[arg(long, value_name = "MB")]
    pub memory: String,
    /// CPUs.
    #[arg(long, value_name = "N")]
    pub cpus: String,
    /// Workload: web (default), oltp, dw, mixed.
    #[arg(long)]
    pub workload: Option<String>,
    /// Storage: ssd (default), hdd, san.
    #[arg(long)]
    pub storage: Option<String>,
    /// Print JSON instead of `name = value` lines.
    #[arg(long)]
    pub json: bool,
}

/// Platforms to work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformArg {
    /// linux/amd64.
    Amd64,
    /// linux/arm64.
    Arm64,
    /// Every platform of the image definition.
    All,
}

/// `azb build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Platform to build for.
    #[arg(long, value_enum, default_value = "all")]
    pub platform: PlatformArg,
    /// Where to write the image: oci:DIR (OCI layout, multi-arch), docker-archive:FILE
    /// (one platform, for `docker load`), registry:HOST/REPO[:TAG] (pushed, multi-arch,
    /// under the image's tags and TAG; blobs the registry has are skipped or mounted from
    /// an oci:// cache on it), or extensions:DIR (one image per extension, its files at
    /// the image root for CloudNativePG, as the OCI layout DIR/<extension>). Without it,
    /// only the store is filled.
    #[arg(
        long,
        value_name = "oci:DIR|docker-archive:FILE|registry:HOST/REPO[:TAG]|extensions:DIR"
    )]
    pub output: Option<String>,
    /// Builds to run at once; default: the number of CPUs.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// After a failure, go on with everything that does not depend on it.
    #[arg(long)]
    pub keep_going: bool,
}

/// `azb plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Platform to plan for.
    #[arg(long, value_enum, default_value = "all")]
    pub platform: PlatformArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
