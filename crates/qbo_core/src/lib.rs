//! The qbo_rs engine: everything on the hot path of a QuickBooks Online backfill, in Rust
//! and free of Python. Plan windows ([`window`]), authenticate ([`auth`]), fetch pages at
//! the realm's pace without losing records ([`client`], [`paginate`]), write the RAW layer
//! idempotently ([`sink`]), and reconcile counts ([`backfill`]).

pub mod auth;
pub mod backfill;
pub mod budget;
pub mod cdc;
pub mod client;
pub mod credentials;
pub mod entity;
pub mod error;
pub mod head;
mod http;
pub mod limiter;
pub mod options;
pub mod paginate;
pub mod query;
pub mod read_plan;
pub mod report;
pub mod response;
pub mod retry;
mod seen;
pub mod sink;
pub mod stage;
pub mod stop;
mod stream_run;
pub mod streams;
pub mod sync;
pub mod time;
pub mod token_store;
pub mod window;
mod window_run;
mod writer;

pub use client::{ClientConfig, QboClient};
pub use credentials::{Credentials, Environment};
pub use entity::{Entity, FilterField};
pub use error::{Error, Result};
pub use window::{plan_windows, Window};
