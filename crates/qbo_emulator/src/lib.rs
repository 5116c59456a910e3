//! qbo_emulator
