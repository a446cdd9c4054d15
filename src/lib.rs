//! azb builds a PostgreSQL 18 image from declarative recipes through a content-addressed
//! store. Data flows one way: recipe -> graph -> drv -> (store | fetch -> build) -> image;
//! `cli` sits on top and only parses, resolves settings and renders.

pub mod digest;
pub mod env;
pub mod fs;
pub mod recipe;
pub mod graph;
pub mod drv;
pub mod store;
pub mod fetch;
pub mod build;
