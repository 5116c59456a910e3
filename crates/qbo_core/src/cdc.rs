//! Reading QuickBooks' Change Data Capture answers (`GET /v3/company/{realm}/cdc`).
//!
//! CDC lists every object of the asked entities changed since an instant: the live ones in full,
//! ordered by `LastUpdatedTime`, then the deleted ones as stubs carrying only `Id`,
//! `"status":"Deleted"` and `MetaData.LastUpdatedTime` (the deletion time). It is the only
//! place QuickBooks reports hard deletions (transactions such as Invoice simply vanish from
//! queries). Two limits shape how it is used: it looks back at most [`LOOKBACK_DAYS`] days,
//! and one answer holds at most [`MAX_OBJECTS`] objects across the asked entities, with no
//! paging, so an answer that reaches the cap may have left deletions out.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::entity::Entity;
use crate::error::Error;
use crate::sink::Deleted;
use crate::time::parse_qbo_timestamp;

/// Objects in one answer at most; an answer holding this many may be cut short.
pub const MAX_OBJECTS: usize = 1000;

/// How far back `changedSince` may reach; older is refused with a 400.
pub const LOOKBACK_DAYS: i64 = 30;

/// One CDC answer, as far as a deletion sweep needs it.
#[derive(Debug, Clone, Default)]
pub struct CdcPage {
    /// QuickBooks' clock when it answered (the body's `time`), if it said.
    pub time: Option<DateTime<Utc>>,
    /// Every object in the answer, live or deleted, of every entity: what the cap counts.
    pub objects: usize,
    /// The entity's deletion stubs, in the answer's order.
    pub deleted: Vec<Deleted>,
}

impl CdcPage {
    /// The answer holds as many objects as QuickBooks sends at most, so some may be missing.
    pub fn at_cap(&self) -> bool {
        self.objects >= MAX_OBJECTS
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "CDCResponse", default, borrow)]
    responses: Vec<Response<'a>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(rename = "QueryResponse", default, borrow)]
    groups: Vec<HashMap<Cow<'a, str>, &'a RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Object<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "status", default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    meta_data: Option<Meta<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Meta<'a> {
    #[serde(borrow)]
    last_updated_time: Option<Cow<'a, str>>,
}

/// Reads a CDC body: counts every object and keeps `entity`'s deletion stubs.
pub fn parse_cdc(body: &Bytes, entity: Entity) -> Result<CdcPage, Error> {
    let malformed =
        |why: String| Error::Server { message: format!("QBO answered a malformed CDC body ({why})"), status: Some(200), intuit_tid: None, attempts: 1 };
    let parsed: Body<'_> = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let mut page = CdcPage { time: parsed.time.as_deref().and_then(parse_qbo_timestamp), ..CdcPage::default() };
    for group in parsed.responses.iter().flat_map(|r| &r.groups) {
        for (key, value) in group {
            if !value.get().starts_with('[') {
                continue; // startPosition, maxResults, totalCount
            }
            if !key.eq_ignore_ascii_case(entity.qbo_name()) {
                page.objects += serde_json::from_str::<Vec<IgnoredAny>>(value.get()).map_err(|e| malformed(e.to_string()))?.len();
                continue;
            }
            let objects: Vec<Object<'_>> = serde_json::from_str(value.get()).map_err(|e| malformed(e.to_string()))?;
            page.objects += objects.len();
            for o in objects.into_iter().filter(|o| o.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Deleted"))) {
                let id = o.id.ok_or_else(|| malformed(format!("a deleted {entity} without Id")))?;
                let stamp = o.meta_data.and_then(|m| m.last_updated_time);
                let deleted_at = stamp
                    .as_deref()
                    .and_then(parse_qbo_timestamp)
                    .ok_or_else(|| malformed(format!("deleted {entity} {id} has no readable MetaData.LastUpdatedTime")))?;
                page.deleted.push(Deleted { id: id.into_owned(), deleted_at });
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stubs_and_counts_every_object() {
        let body = Bytes::from_static(
            br#"{"CDCResponse":[{"QueryResponse":[
                {"Customer":[{"Id":"63","DisplayName":"A","MetaData":{"LastUpdatedTime":"2025-03-02T12:00:00-08:00"}}],"startPosition":1,"maxResults":1},
                {"Invoice":[{"Id":"130","MetaData":{"LastUpdatedTime":"2025-03-02T12:50:00-08:00"},"Line":[]},
                            {"domain":"QBO","status":"Deleted","Id":"129","MetaData":{"LastUpdatedTime":"2025-03-02T12:55:50-08:00"}}],
                 "startPosition":1,"maxResults":2,"totalCount":2}]}],
              "time":"2025-03-02T13:00:01.196-08:00"}"#,
        );
        let page = parse_cdc(&body, Entity::Invoice).unwrap();
        assert_eq!(page.objects, 3);
        assert_eq!(page.deleted, vec![Deleted { id: "129".into(), deleted_at: "2025-03-02T20:55:50Z".parse().unwrap() }]);
        assert_eq!(page.time, Some("2025-03-02T21:00:01.196Z".parse().unwrap()));
        assert!(!page.at_cap());
    }

    #[test]
    fn an_empty_answer_is_no_change() {
        let body = Bytes::from_static(br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"2025-03-02T13:00:01-08:00"}"#);
        let page = parse_cdc(&body, Entity::Item).unwrap();
        assert_eq!((page.objects, page.deleted.len()), (0, 0));
    }

    #[test]
    fn a_stub_without_time_is_an_error() {
        let body = Bytes::from_static(br#"{"CDCResponse":[{"QueryResponse":[{"Invoice":[{"status":"Deleted","Id":"9"}]}]}]}"#);
        assert!(parse_cdc(&body, Entity::Invoice).is_err());
    }
}
