//! Recipes: the RON model of one extension, tool or builtin; the image definition; parsing
//! with file:line:col diagnostics; validation of the rules in DESIGN.md.
//!
//! Owns the meaning of recipe fields. Never fetches, builds or hashes anything, and knows
//! nothing of the store.

mod diagnostic;
mod edit;
mod error;
mod image_def;
mod license;
mod load;
mod lock;
mod model;
mod overlay;
mod platform;
mod release;
mod scaffold;

pub use diagnostic::{Diagnostics, RecipeDiagnostic, SourceFile};
pub use edit::{NoPin, set_pin, set_version};
pub use error::Error;
pub use image_def::{BaseImage, Companion, ImageDef, PlatformDef, RecipeSelection, Toolchain};
pub use license::{
    is_license_expression, is_license_file, is_recognised_id, license_of_text, license_of_texts,
    license_of_tree,
};
pub use load::{
    LoadedRecipe, Project, RecipeSet, StackImages, is_relative_subdir, is_version, load_recipes,
};
pub use lock::{
    Builders as LockedBuilders, EMULATED_PREFIX, LOCK_FILE, LOCK_VERSION, Lock, LockProblem,
    LockedPackage, PlatformLock, set_key,
};
pub use model::{
    BadCommit, BadName, Build, CommitSha, Recipe, RecipeKind, RecipeName, RuntimeFlags, Source,
};
pub use overlay::{Overlay, Patch};
pub use platform::{Platform, UnknownPlatform};
pub use release::{newer_releases, release_numbers};
pub use scaffold::{Detected, ScaffoldError, detect, render};
