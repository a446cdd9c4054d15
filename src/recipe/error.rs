//! Errors of the recipe module.

use std::path::PathBuf;

use crate::fs::FsError;

pub use super::diagnostic::{Diagnostics, RecipeDiagnostic};

/// What can go wrong reading recipes and image definitions.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A recipe or image file breaks a rule.
    #[error(transparent)]
    #[diagnostic(transparent)]
    One(Box<RecipeDiagnostic>),
    /// Several problems, each with its place.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Diagnostics),
    /// A file could not be read.
    #[error(transparent)]
    Read(#[from] FsError),
    /// The project has no `recipes/` directory.
    #[error("no recipes directory at `{path}`")]
    #[diagnostic(help(
        "run azb inside a project (a directory holding recipes/ and stacks/), or pass --project DIR"
    ))]
    NoRecipes {
        /// Where it was expected.
        path: PathBuf,
    },
    /// No Compose stack of that name.
    #[error("no stack `{stack}`: there is no stacks/{stack}/compose.yml")]
    #[diagnostic(help("the project's stacks: {available}"))]
    NoStack {
        /// The name asked for.
        stack: String,
        /// The stacks there are, comma-separated.
        available: String,
    },
}

impl From<Vec<RecipeDiagnostic>> for Error {
    fn from(mut list: Vec<RecipeDiagnostic>) -> Self {
        if list.len() == 1 {
            Error::One(Box::new(list.remove(0)))
        } else {
            Error::Invalid(Diagnostics(list))
        }
    }
}
