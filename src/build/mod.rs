//! Building: host toolchains and their identity, the host executor (sessions that run
//! steps with no network and a fixed environment), build kinds, the normalisation of
//! installed files into artifacts, and the parallel scheduler with its [`Reporter`].
//!
//! Owns running builds. Asks the store before building and hands results to it; never
//! decides what a derivation is (drv) or how an image looks (image). Never draws progress
//! bars: it reports events.

mod builder;
mod ccache;
mod docker;
mod error;
mod executor;
mod host;
mod job;
mod kind;
mod pg_config;
mod pgrx;
mod reporter;
mod rust;
mod scheduler;
mod toolchain;
mod tree;
mod warm;

pub use builder::{DISTRIBUTION, Docker, ImageMaker, image_tag, resolve_lock, toolchain_hash};
pub use docker::{DockerExecutor, Limits};
pub use error::Error;
pub use executor::{Executor, Sandbox, SessionSpec, Step, log_tail};
pub use host::HostExecutor;
pub use pg_config::stand_in as pg_config_stand_in;
pub use reporter::{Reporter, Silent};
pub use rust::rust_identity_for;
pub use scheduler::{Outcome, Scheduler};
pub use toolchain::HostToolchain;
