//! Picking `Id`, `SyncToken`, `MetaData` times and `TxnDate` out of a record that serde_json
//! has already validated (the page is parsed once, into raw slices). Decoding each record a
//! second time with serde only to skip its lines, addresses and amounts cost as much as the
//! first parse; this walks the top level with memchr, skips everything else unread, and
//! stops as soon as it has the fields asked for. QBO (and the emulator) put `Id`, `SyncToken`
//! and `MetaData` near the start of every entity, so a 2 KB invoice costs about 100 bytes of
//! scanning instead of all of it.

use std::borrow::Cow;

/// The fields of a record's top level that place and version it.
#[derive(Debug, Default, PartialEq)]
pub struct Head<'a> {
    pub id: Option<Cow<'a, str>>,
    pub sync_token: Option<Cow<'a, str>>,
    pub create_time: Option<Cow<'a, str>>,
    pub last_updated_time: Option<Cow<'a, str>>,
    pub txn_date: Option<Cow<'a, str>>,
}

/// Scans one JSON object until it has `Id`, `SyncToken` and `MetaData` (and `TxnDate` when
/// `want_txn_date`). `raw` must be valid JSON (it comes out of serde_json's RawValue); on
/// anything unexpected the scan stops and returns what it found so far. Should a key appear
/// twice in one object (QBO never does that), the first copy counts.
pub fn scan(raw: &[u8], want_txn_date: bool) -> Head<'_> {
    let mut head = Head::default();
    let mut s = Scanner { b: raw, i: 0 };
    let mut meta_seen = false;
    s.object(|s, key| {
        match key {
            b"Id" if head.id.is_none() => head.id = s.string_value(),
            b"SyncToken" if head.sync_token.is_none() => head.sync_token = s.string_value(),
            b"TxnDate" if head.txn_date.is_none() => head.txn_date = s.string_value(),
            b"MetaData" if !meta_seen => {
                meta_seen = true;
                let (mut create, mut updated) = (None, None);
                if s.peek() == Some(b'{') {
                    s.object(|s, key| {
                        match key {
                            b"CreateTime" => create = s.string_value(),
                            b"LastUpdatedTime" => updated = s.string_value(),
                            _ => s.skip_value(),
                        }
                        Flow::Continue
                    });
                } else {
                    s.skip_value();
                }
                head.create_time = create;
                head.last_updated_time = updated;
            }
            _ => s.skip_value(),
        }
        let done = head.id.is_some() && head.sync_token.is_some() && meta_seen && (head.txn_date.is_some() || !want_txn_date);
        if done {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    head
}

/// Whether [`Scanner::object`] reads on after a key.
enum Flow {
    Continue,
    Stop,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// Visits each key of the object at the cursor; `visit` must consume the value, and can
    /// stop the walk (the cursor is then left inside the object).
    fn object(&mut self, mut visit: impl FnMut(&mut Self, &'a [u8]) -> Flow) {
        if self.peek() != Some(b'{') {
            return;
        }
        self.i += 1;
        loop {
            if self.peek() != Some(b'"') {
                self.leave_object();
                return;
            }
            let Some((key, _)) = self.string_span() else { return };
            if self.peek() != Some(b':') {
                self.i = self.b.len();
                return;
            }
            self.i += 1;
            self.ws();
            if let Flow::Stop = visit(self, key) {
                return;
            }
            if self.peek() != Some(b',') {
                self.leave_object();
                return;
            }
            self.i += 1;
        }
    }

    /// Steps past the `}` at the cursor; anything else there means the object is malformed,
    /// and the walk ends (the cursor goes to the end).
    fn leave_object(&mut self) {
        self.i = if self.peek() == Some(b'}') { self.i + 1 } else { self.b.len() };
    }

    /// The bytes between the quotes of the string at the cursor, and whether it has escapes.
    fn string_span(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            let k = memchr::memchr2(b'"', b'\\', &self.b[j..])? + j;
            if self.b[k] == b'\\' {
                escaped = true;
                j = k + 2;
                if j > self.b.len() {
                    return None;
                }
            } else {
                self.i = k + 1;
                return Some((&self.b[start..k], escaped));
            }
        }
    }

    fn string_value(&mut self) -> Option<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            self.skip_value();
            return None;
        }
        let open = self.i;
        let (body, escaped) = self.string_span()?;
        if escaped {
            serde_json::from_slice::<String>(&self.b[open..self.i]).ok().map(Cow::Owned)
        } else {
            std::str::from_utf8(body).ok().map(Cow::Borrowed)
        }
    }

    fn skip_value(&mut self) {
        match self.peek() {
            Some(b'"') => {
                let _ = self.string_span();
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while self.i < self.b.len() {
                    match self.b[self.i] {
                        b'"' => {
                            if self.string_span().is_none() {
                                self.i = self.b.len();
                            }
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            Some(_) => {
                while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']') {
                    self.i += 1;
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_top_level_fields_not_nested_ones() {
        let raw = br#"{"Line":[{"Id":"1","Amount":150.0,"Detail":{"Id":"9"}}],"BillAddr":{"Id":"95","Line1":"a \"quoted\" } street"},
            "Id":"1043","SyncToken":"2","sparse":false,"Deposit":0,"MetaData":{"CreateTime":"2025-02-03T10:15:02-08:00",
            "LastUpdatedTime":"2025-02-04T08:01:55-08:00"},"TxnDate":"2025-02-03","CustomField":[],"Note":null}"#;
        let h = scan(raw, true);
        assert_eq!(h.id.as_deref(), Some("1043"));
        assert_eq!(h.sync_token.as_deref(), Some("2"));
        assert_eq!(h.last_updated_time.as_deref(), Some("2025-02-04T08:01:55-08:00"));
        assert_eq!(h.create_time.as_deref(), Some("2025-02-03T10:15:02-08:00"));
        assert_eq!(h.txn_date.as_deref(), Some("2025-02-03"));
    }

    #[test]
    fn stops_reading_once_it_has_the_fields_asked_for() {
        // What follows MetaData is never looked at: here it is not even JSON.
        let raw = br#"{"domain":"QBO","Id":"7","SyncToken":"1","MetaData":{"CreateTime":"c","LastUpdatedTime":"u"},"Line":[{"#;
        let h = scan(raw, false);
        assert_eq!((h.id.as_deref(), h.sync_token.as_deref(), h.last_updated_time.as_deref()), (Some("7"), Some("1"), Some("u")));
        // Asked for TxnDate, it reads on past the lines to find it.
        let raw = br#"{"Id":"7","SyncToken":"1","MetaData":{"LastUpdatedTime":"u"},"Line":[{"Id":"1","TxnDate":"x"}],"TxnDate":"2025-01-02"}"#;
        assert_eq!(scan(raw, true).txn_date.as_deref(), Some("2025-01-02"));
        assert_eq!(scan(raw, false).txn_date, None);
        // A key given twice: the first copy counts.
        assert_eq!(scan(br#"{"Id":"1","Id":"2"}"#, false).id.as_deref(), Some("1"));
    }

    #[test]
    fn escaped_values_are_decoded() {
        let h = scan(br#"{"Id":"a\"b\u0041"}"#, false);
        assert_eq!(h.id.as_deref(), Some("a\"bA"));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
            ".{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[A-Za-z\"\\\\{}]{0,6}", inner, 0..4).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Whatever surrounds them, the scanner agrees with serde_json on the fields it reads.
        #[test]
        fn agrees_with_serde(extra in prop::collection::btree_map("[A-Za-z\"\\\\{}]{1,6}", json_value(), 0..6),
                             id in ".{1,10}", sync in "[0-9]{1,3}", want_txn_date in any::<bool>()) {
            let mut obj = serde_json::Map::new();
            for (k, v) in extra { if !["Id", "SyncToken", "MetaData", "TxnDate"].contains(&k.as_str()) { obj.insert(k, v); } }
            obj.insert("Id".into(), serde_json::json!(id));
            obj.insert("SyncToken".into(), serde_json::json!(sync));
            obj.insert("MetaData".into(), serde_json::json!({"CreateTime": "c", "LastUpdatedTime": "u"}));
            obj.insert("TxnDate".into(), serde_json::json!("2025-01-02"));
            let text = serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap();
            let h = scan(&text, want_txn_date);
            prop_assert_eq!(h.id.as_deref(), Some(id.as_str()));
            prop_assert_eq!(h.sync_token.as_deref(), Some(sync.as_str()));
            prop_assert_eq!(h.last_updated_time.as_deref(), Some("u"));
            prop_assert_eq!(h.create_time.as_deref(), Some("c"));
            if want_txn_date {
                prop_assert_eq!(h.txn_date.as_deref(), Some("2025-01-02"));
            }
        }
    }
}
