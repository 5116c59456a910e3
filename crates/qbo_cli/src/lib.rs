//! qbo_cli
