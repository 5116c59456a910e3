//! qbo_emulator (work in progress)
#![allow(dead_code)]
pub mod config;
pub mod data;
pub(crate) mod pacific;
pub mod query;
pub(crate) mod rng;
pub use config::*;
