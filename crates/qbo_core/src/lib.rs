//! qbo_core
