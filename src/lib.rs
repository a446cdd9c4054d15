//! azb builds a PostgreSQL 18 image from declarative recipes through a content-addressed
//! store. Data flows one way: recipe -> graph -> drv -> (store | fetch -> build) -> image,
//! which `assembly` asks for what a build produced; `cli` sits on top and only parses,
//! resolves settings and renders.

pub mod assembly;
pub mod build;
pub mod cli;
pub mod digest;
pub mod drv;
pub mod env;
pub mod fetch;
pub mod fs;
pub mod graph;
pub mod image;
pub mod layer;
pub mod recipe;
pub mod remote;
pub mod runtime;
pub mod store;
