//! azb's integration tests: the real binary against real git repositories, compilers,
//! PostgreSQL 18 servers, OCI tools and the Docker engine.

mod autoconfig;
mod builders;
mod cache;
mod catalog;
mod context;
mod demo;
mod errors;
mod extensions;
mod firstboot;
mod image;
mod initdb;
mod kinds;
mod live;
mod overlay;
mod pgbouncer;
mod pgrx;
mod pipeline;
mod postgres;
mod recipe;
mod replication;
mod servers;
mod stacks;
