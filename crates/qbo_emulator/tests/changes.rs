//! Deletes, creations and what CDC reports of them, over HTTP.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use common::*;
use qbo_emulator::{format_pacific, DeletedRow, Deletion, Knobs};
use reqwest::Client;
use serde_json::Value;

/// The objects of each group of a CDC answer, by entity, in the order served.
fn cdc_groups(v: &Value) -> Vec<(String, Vec<Value>)> {
    let groups = v["CDCResponse"][0]["QueryResponse"].as_array().unwrap();
    groups
        .iter()
        .filter(|g| !g.as_object().unwrap().is_empty())
        .map(|g| {
            let (entity, objects) = g.as_object().unwrap().iter().find(|(_, v)| v.is_array()).unwrap();
            let objects = objects.as_array().unwrap().clone();
            assert_eq!(g["maxResults"], objects.len(), "maxResults is the number of objects the group holds");
            assert_eq!(g["totalCount"], objects.len());
            assert_eq!(g["startPosition"], 1);
            (entity.clone(), objects)
        })
        .collect()
}

async fn cdc_json(http: &Client, emu: &qbo_emulator::Emulator, tok: &str, entities: &str, since: &str) -> Value {
    let r = cdc(http, emu, tok, entities, since).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn is_stub(o: &Value) -> bool {
    o["status"] == "Deleted"
}

/// A deleted stub's `MetaData.LastUpdatedTime` is the deletion time, rendered as every other
/// LastUpdatedTime (Pacific, whole seconds).
fn assert_stub_of(o: &Value, row: &DeletedRow) {
    let keys: BTreeSet<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["domain", "status", "Id", "MetaData"]), "{o}");
    assert_eq!((o["domain"].as_str(), o["Id"].as_str()), (Some("QBO"), Some(row.id.as_str())));
    assert_eq!(o["MetaData"], serde_json::json!({"LastUpdatedTime": format_pacific(row.deleted_at.timestamp())}));
}

async fn deleted_list(http: &Client, emu: &qbo_emulator::Emulator, entity: &str) -> Vec<DeletedRow> {
    let v = admin_get(http, emu, &format!("deleted/{entity}")).await;
    for row in v.as_array().unwrap() {
        let at = row["deleted_at"].as_str().unwrap();
        assert!(at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.', "UTC RFC 3339 with milliseconds: {at}");
    }
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn a_deleted_invoice_leaves_queries_counts_reads_and_truth_and_cdc_reports_a_stub() {
    let (emu, http, tok) = session(cfg(50)).await;
    let before = emu.truth("Invoice").unwrap().into_iter().find(|r| r.id == "7").unwrap();
    let (s, v) = admin_post(&http, &emu, "delete/Invoice/007").await;
    assert_eq!(s, 200, "{v}");
    let Deletion::Deleted { entity, id, deleted_at } = serde_json::from_value(v.clone()).unwrap() else { panic!("{v}") };
    assert_eq!((entity.as_str(), id.as_str(), v["outcome"].as_str()), ("Invoice", "7", Some("deleted")));
    assert!(deleted_at > before.last_updated_utc && deleted_at <= Utc::now() + chrono::Duration::seconds(1));
    // Gone from queries (by window, by Id, COUNT), the read route and the truth.
    let ids = page_invoice_ids(&http, &emu, &tok, WINDOW_ALL, "MetaData.LastUpdatedTime", 20).await;
    assert_eq!(ids.len(), 49);
    assert!(!ids.contains(&"7".to_string()));
    let v = json_q(&http, &emu, &tok, "SELECT * FROM Invoice WHERE Id IN ('6', '7', '8')").await;
    let got: Vec<&str> = v["QueryResponse"]["Invoice"].as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(BTreeSet::from_iter(got), BTreeSet::from(["6", "8"]));
    assert_eq!(strip_time(json_q(&http, &emu, &tok, "SELECT * FROM Invoice WHERE Id = '7'").await), serde_json::json!({"QueryResponse": {}}));
    for q in
        ["SELECT COUNT(*) FROM Invoice", &format!("SELECT COUNT(*) FROM Invoice WHERE {WINDOW_ALL}"), "SELECT COUNT(*) FROM Invoice WHERE Id IN ('7', '8')"]
    {
        let want = if q.contains("IN") { 1 } else { 49 };
        assert_eq!(json_q(&http, &emu, &tok, q).await["QueryResponse"]["totalCount"], want, "{q}");
    }
    let r = api_get(&http, &emu, &tok, "invoice/7").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["Fault"]["Error"][0]["code"], "610");
    let truth = emu.truth("Invoice").unwrap();
    assert!(truth.len() == 49 && truth.iter().all(|r| r.id != "7"));
    let over_http: Vec<qbo_emulator::TruthRow> = serde_json::from_value(admin_get(&http, &emu, "truth/Invoice").await).unwrap();
    assert_eq!(over_http, truth);
    assert!(emu.record_json("Invoice", "7").is_err());
    // Listed as deleted, and reported by CDC as a stub only.
    let deleted = deleted_list(&http, &emu, "Invoice").await;
    assert_eq!(deleted, vec![DeletedRow { id: "7".into(), deleted_at }]);
    assert_eq!(emu.deleted("Invoice").unwrap(), deleted);
    let groups = cdc_groups(&cdc_json(&http, &emu, &tok, "Invoice,Customer", &minutes_ago(60)).await);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].0, "Invoice");
    assert_eq!(groups[0].1.len(), 1);
    assert_stub_of(&groups[0].1[0], &deleted[0]);
    // A changedSince after the deletion leaves it out.
    let after = (deleted_at + chrono::Duration::milliseconds(1)).to_rfc3339();
    assert_eq!(cdc_json(&http, &emu, &tok, "Invoice", &after).await["CDCResponse"], serde_json::json!([{"QueryResponse": [{}]}]));
    // A second delete, an edit of the deleted record, unknown Ids and entities: clean 404s.
    for path in ["delete/Invoice/7", "edit/Invoice/7", "delete/Invoice/999", "delete/Bill/1"] {
        let (s, v) = admin_post(&http, &emu, path).await;
        assert_eq!(s, 404, "{path}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {v}");
    }
    assert_eq!(emu.stats().deletes, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_deleted_customer_or_item_becomes_inactive_in_an_update_that_cdc_reports() {
    let (emu, http, tok) = session(cfg(10)).await;
    for (entity, names) in [("Customer", ["DisplayName", "FullyQualifiedName"]), ("Item", ["Name", "FullyQualifiedName"])] {
        let truth = emu.truth(entity).unwrap();
        let before = truth.iter().find(|r| r.active).unwrap().clone();
        let id = before.id.clone();
        let by_id = format!("SELECT * FROM {entity} WHERE Id = '{id}' AND Active IN (true, false)");
        let old = json_q(&http, &emu, &tok, &by_id).await["QueryResponse"][entity][0].clone();
        let active_count = json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM {entity}")).await["QueryResponse"]["totalCount"].as_u64().unwrap();
        let (s, v) = admin_post(&http, &emu, &format!("delete/{entity}/{id}")).await;
        assert_eq!(s, 200);
        let Deletion::MadeInactive { record, .. } = serde_json::from_value(v.clone()).unwrap() else { panic!("{v}") };
        assert_eq!(v["outcome"], "made_inactive");
        assert!(!record.active);
        assert_eq!(record.sync_token.parse::<u32>().unwrap(), before.sync_token.parse::<u32>().unwrap() + 1);
        assert!(record.last_updated_utc > before.last_updated_utc);
        // Hidden from plain queries, still there with Active IN (true,false), and in the truth.
        let count = json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM {entity}")).await["QueryResponse"]["totalCount"].as_u64().unwrap();
        assert_eq!(count, active_count - 1);
        let all = json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM {entity} WHERE Active IN (true,false)")).await;
        assert_eq!(all["QueryResponse"]["totalCount"], truth.len());
        let now = json_q(&http, &emu, &tok, &by_id).await["QueryResponse"][entity][0].clone();
        assert_eq!((now["Active"].as_bool(), now["SyncToken"].as_str()), (Some(false), Some(record.sync_token.as_str())));
        for name in names {
            assert_eq!(now[name].as_str().unwrap(), format!("{} (deleted)", old[name].as_str().unwrap()), "{entity}.{name}");
        }
        assert_eq!(emu.truth(entity).unwrap().into_iter().find(|r| r.id == id), Some(record.clone()));
        assert_eq!(deleted_list(&http, &emu, entity).await, vec![], "name-list records are never deleted");
        // CDC: a normal update carrying the full inactive record.
        let groups = cdc_groups(&cdc_json(&http, &emu, &tok, entity, &minutes_ago(60)).await);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1, vec![now.clone()]);
        assert!(!is_stub(&groups[0].1[0]));
        // Deleting it again finds nothing active to delete.
        assert_eq!(admin_post(&http, &emu, &format!("delete/{entity}/{id}")).await.0, 404);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn created_records_take_ids_never_used_and_are_served_like_generated_ones() {
    let (emu, http, tok) = session(cfg(20)).await;
    for (entity, next, list_name) in [("Invoice", "21", "DocNumber"), ("Customer", "81", "DisplayName"), ("Item", "41", "Name")] {
        let (s, v) = admin_post(&http, &emu, &format!("create/{entity}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!((v["Id"].as_str(), v["SyncToken"].as_str(), v["domain"].as_str()), (Some(next), Some("0"), Some("QBO")));
        assert_eq!(v["MetaData"]["CreateTime"], v["MetaData"]["LastUpdatedTime"]);
        assert!((Utc::now() - last_updated(&v).with_timezone(&Utc)).num_seconds().abs() <= 2, "stamped now: {v}");
        assert!(v[list_name].as_str().is_some_and(|n| !n.is_empty()), "{entity}: {v}");
        // The same bytes through a query by Id, the read route, and the truth.
        let q = json_q(&http, &emu, &tok, &format!("SELECT * FROM {entity} WHERE Id = '{next}'")).await;
        assert_eq!(q["QueryResponse"][entity][0], v);
        let r: Value = api_get(&http, &emu, &tok, &format!("{}/{next}", entity.to_lowercase())).await.json().await.unwrap();
        assert_eq!(r[entity], v);
        assert!(emu.truth(entity).unwrap().iter().any(|t| t.id == next && t.sync_token == "0" && t.active));
        let groups = cdc_groups(&cdc_json(&http, &emu, &tok, entity, &minutes_ago(5)).await);
        assert_eq!(groups[0].1, vec![v]);
    }
    let v: Value = serde_json::from_slice(&emu.record_json("Invoice", "21").unwrap()).unwrap();
    let customer: u32 = v["CustomerRef"]["value"].as_str().unwrap().parse().unwrap();
    assert!((1..=80).contains(&customer), "a new invoice refers to an existing customer");
    assert!(v["Line"].as_array().unwrap().len() >= 3);
    // Deleting the newest invoice does not free its Id.
    emu.delete("Invoice", "21").unwrap();
    let v: Value = serde_json::from_slice(&emu.create("Invoice", None).unwrap()).unwrap();
    assert_eq!(v["Id"], "22");
    assert_eq!(json_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Invoice").await["QueryResponse"]["totalCount"], 21);
    assert_eq!(emu.stats().creates, 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn recreating_a_deleted_invoice_id_gives_a_version_newer_than_its_deletion() {
    let (emu, http, tok) = session(cfg(20)).await;
    emu.edit("Invoice", "3").unwrap();
    let Deletion::Deleted { deleted_at, .. } = emu.delete("Invoice", "3").unwrap() else { panic!("an invoice is hard-deleted") };
    let (s, v) = admin_post(&http, &emu, "create/Invoice?id=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["Id"].as_str(), v["SyncToken"].as_str()), (Some("3"), Some("0")));
    let version: DateTime<Utc> = last_updated(&v).with_timezone(&Utc);
    assert!(version.timestamp() > deleted_at.timestamp(), "a later second than the deletion: {version} vs {deleted_at}");
    // Live again everywhere; no longer reported as deleted.
    assert_eq!(json_q(&http, &emu, &tok, "SELECT * FROM Invoice WHERE Id = '3'").await["QueryResponse"]["Invoice"][0], v);
    assert_eq!(deleted_list(&http, &emu, "Invoice").await, vec![]);
    let groups = cdc_groups(&cdc_json(&http, &emu, &tok, "Invoice", &minutes_ago(5)).await);
    assert_eq!(groups[0].1, vec![v]);
    // Refused: a live Id (409), an Id never used (404); name lists have no deleted Id.
    for (path, status) in [("create/Invoice?id=3", 409), ("create/Invoice?id=4", 409), ("create/Invoice?id=999", 404), ("create/Customer?id=1", 409)] {
        let (s, v) = admin_post(&http, &emu, path).await;
        assert_eq!(s, status, "{path}: {v}");
        assert!(v["error"].is_string());
    }
    emu.shutdown().await;
}

/// The Ids and kinds (`true` for a stub) of a CDC group.
fn ids_of(objects: &[Value]) -> Vec<(String, bool)> {
    objects.iter().map(|o| (o["Id"].as_str().unwrap().to_string(), is_stub(o))).collect()
}

#[tokio::test]
async fn cdc_lists_actives_then_stubs_and_cuts_at_the_cap_across_entities() {
    let (emu, http, tok) = session(cfg(30)).await;
    let knobs: Knobs = http.post(format!("{}/_emulator/knobs", emu.base_url())).body(r#"{"cdc_max_objects": 5}"#).send().await.unwrap().json().await.unwrap();
    assert_eq!(knobs.cdc_max_objects, 5);
    // Deletions interleaved with edits: stubs still come after every active object.
    emu.delete("Invoice", "9").unwrap();
    for id in ["12", "4"] {
        emu.edit("Invoice", id).unwrap();
    }
    emu.delete("Invoice", "2").unwrap();
    emu.edit("Invoice", "20").unwrap();
    for id in ["5", "6"] {
        emu.edit("Customer", id).unwrap();
    }
    let since = minutes_ago(5);
    let groups = cdc_groups(&cdc_json(&http, &emu, &tok, "Invoice,Customer", &since).await);
    assert_eq!(groups.len(), 1, "the cap is spent on invoices");
    let inv = &groups[0].1;
    assert!(inv[..3]
        .windows(2)
        .all(|w| (last_updated(&w[0]), w[0]["Id"].as_str().unwrap().parse::<u32>().unwrap())
            < (last_updated(&w[1]), w[1]["Id"].as_str().unwrap().parse().unwrap())));
    let mut actives: Vec<&str> = inv[..3].iter().map(|o| o["Id"].as_str().unwrap()).collect();
    actives.sort_unstable();
    assert_eq!(actives, ["12", "20", "4"]);
    let deleted = emu.deleted("Invoice").unwrap();
    assert_eq!(deleted.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["9", "2"], "ascending by deletion time");
    assert!(deleted[0].deleted_at < deleted[1].deleted_at);
    assert_stub_of(&inv[3], &deleted[0]);
    assert_stub_of(&inv[4], &deleted[1]);
    // In the other order the customers come first and the cap cuts the invoices' stubs.
    let groups = cdc_groups(&cdc_json(&http, &emu, &tok, "Customer,Invoice", &since).await);
    assert_eq!(groups.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["Customer", "Invoice"]);
    assert_eq!(groups[0].1.len(), 2);
    assert_eq!(ids_of(&groups[1].1).iter().filter(|(_, stub)| !stub).count(), 3);
    assert_eq!(groups[1].1.len(), 3, "the tail beyond 5 objects is dropped");
    // A cap of 4: three actives and the first stub.
    emu.set_knobs(Knobs { cdc_max_objects: 4, ..emu.knobs() });
    let inv = cdc_groups(&cdc_json(&http, &emu, &tok, "Invoice", &since).await).remove(0).1;
    assert_eq!(ids_of(&inv)[3], ("9".to_string(), true));
    assert_eq!(inv.len(), 4);
    // 0: no cap.
    emu.set_knobs(Knobs { cdc_max_objects: 0, ..emu.knobs() });
    let groups = cdc_groups(&cdc_json(&http, &emu, &tok, "Invoice,Customer", &since).await);
    assert_eq!(groups.iter().map(|g| g.1.len()).collect::<Vec<_>>(), [5, 2]);
    // The 30-day look-back still holds.
    let r = cdc(&http, &emu, &tok, "Invoice", &minutes_ago(31 * 24 * 60)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("which is older than fixed days is not supported"));
    emu.shutdown().await;
}

#[tokio::test]
async fn the_default_cap_is_1000_objects_stubs_included() {
    let (emu, http, tok) = session(cfg(1200)).await;
    assert_eq!(emu.knobs().cdc_max_objects, 1000);
    for id in 1..=700 {
        emu.edit("Invoice", &id.to_string()).unwrap();
    }
    for id in 701..=1100 {
        let (s, _) = admin_post(&http, &emu, &format!("delete/Invoice/{id}")).await;
        assert_eq!(s, 200);
    }
    let since = minutes_ago(5);
    let groups = cdc_groups(&cdc_json(&http, &emu, &tok, "Invoice,Customer", &since).await);
    assert_eq!(groups.len(), 1);
    let inv = &groups[0].1;
    assert_eq!(inv.len(), 1000);
    assert!(inv[..700].iter().all(|o| !is_stub(o)) && inv[700..].iter().all(is_stub));
    let deleted = emu.deleted("Invoice").unwrap();
    assert_eq!(deleted.len(), 400);
    assert!(deleted.windows(2).all(|w| w[0].deleted_at < w[1].deleted_at), "deletion times strictly increase");
    for (o, row) in inv[700..].iter().zip(&deleted[..300]) {
        assert_stub_of(o, row);
    }
    assert_eq!(json_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Invoice").await["QueryResponse"]["totalCount"], 800);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_creations_during_paging_with_edits_keep_every_index_consistent() {
    let emu = start(cfg(2000)).await;
    emu.set_knobs(Knobs { edit_rate: 0.5, ..Knobs::unthrottled() });
    let http = Client::new();
    let tok = emu.issue_access_token();
    let pagers = spawn_pagers(&emu, &tok, 3, 20, 100);
    let base = emu.base_url();
    let mutator = tokio::spawn(async move {
        let http = Client::new();
        for id in (1..=2000).step_by(7) {
            let r = http.post(format!("{base}/_emulator/delete/Invoice/{id}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            if id % 3 == 0 {
                let r = http.post(format!("{base}/_emulator/create/Invoice")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    });
    for t in pagers {
        t.await.unwrap();
    }
    mutator.await.unwrap();
    let truth = emu.truth("Invoice").unwrap();
    let deleted = emu.deleted("Invoice").unwrap();
    let created = (1..=2000).step_by(7).filter(|id| id % 3 == 0).count();
    assert_eq!(deleted.len(), (1..=2000).step_by(7).count());
    assert_eq!(truth.len(), 2000 - deleted.len() + created);
    // The order index, COUNT, full paging and the served JSON agree with the truth.
    let all = "MetaData.LastUpdatedTime >= '2000-01-01T00:00:00Z'";
    emu.set_knobs(Knobs::unthrottled());
    assert_eq!(json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM Invoice WHERE {all}")).await["QueryResponse"]["totalCount"], truth.len());
    let paged = page_invoice_ids(&http, &emu, &tok, all, "MetaData.LastUpdatedTime, Id", 1000).await;
    assert_eq!(BTreeSet::from_iter(paged.iter().cloned()), truth.iter().map(|t| t.id.clone()).collect::<BTreeSet<_>>());
    assert_eq!(paged.len(), truth.len());
    for row in &truth {
        let v: Value = serde_json::from_slice(&emu.record_json("Invoice", &row.id).unwrap()).unwrap();
        assert_eq!((v["SyncToken"].as_str(), v["MetaData"]["LastUpdatedTime"].as_str()), (Some(row.sync_token.as_str()), Some(row.last_updated_time.as_str())));
    }
    assert!(deleted.iter().all(|d| !truth.iter().any(|t| t.id == d.id)));
    emu.shutdown().await;
}
