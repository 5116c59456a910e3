//! qbo_jsonl
