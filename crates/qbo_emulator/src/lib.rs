//! qbo_emulator (work in progress)
#![allow(dead_code)]
pub mod config;
pub mod data;
pub(crate) mod pacific;
pub(crate) mod rng;
pub use config::*;
