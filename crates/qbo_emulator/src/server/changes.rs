//! Deleting and creating records, as QuickBooks records them: a transaction (Invoice) is
//! hard-deleted and only CDC reports it afterwards; a name-list record (Customer, Item) is never
//! deleted but made inactive, which is an update like any other.

use super::*;

fn utc_of_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Shared {
    /// Edits live record `id` of `e` now.
    pub(crate) fn edit(&self, e: Entity, id: &str) -> Result<TruthRow, EmulatorError> {
        let unknown = || EmulatorError::UnknownId { entity: e.name().into(), id: id.trim().into() };
        let idx = rl(self.table(e)).index_of(id).ok_or_else(unknown)?;
        self.edit_index(e, idx, false).ok_or_else(unknown)
    }

    /// Deletes record `id` of `e` now: a hard delete for an Invoice, a new inactive version for
    /// a Customer or an Item. The record must exist and not be deleted (or inactive) already.
    pub(crate) fn delete(&self, e: Entity, id: &str) -> Result<Deletion, EmulatorError> {
        let entity = e.name().to_string();
        let mut t = wl(self.table(e));
        let Some(idx) = t.slot_of(id) else {
            return Err(EmulatorError::UnknownId { entity, id: id.trim().into() });
        };
        // The Id as QuickBooks writes it ("7", whatever the caller wrote, e.g. "007").
        let key = t.recs[idx].id.to_string();
        let now_ms = Utc::now().timestamp_millis();
        let mut clock = lock(&self.clock);
        let done = if e.is_list() {
            t.make_inactive(idx, &mut clock, now_ms).then(|| Deletion::MadeInactive {
                record: truth_row(&t.recs[idx]),
                entity: entity.clone(),
                id: key.clone(),
            })
        } else {
            t.delete(idx, &mut clock, now_ms).map(|ms| Deletion::Deleted { entity: entity.clone(), id: key.clone(), deleted_at: utc_of_millis(ms) })
        };
        drop(clock);
        drop(t);
        let done = done.ok_or(EmulatorError::AlreadyDeleted { entity, id: key })?;
        lock(&self.stats).deletes += 1;
        Ok(done)
    }

    /// Creates a record of `e` now and returns its served JSON: under the next unused Id, or,
    /// with `reuse_id`, under the Id of a deleted record (a test device: QuickBooks never reuses
    /// an Id).
    pub(crate) fn create(&self, e: Entity, reuse_id: Option<&str>) -> Result<Bytes, EmulatorError> {
        let mut t = wl(self.table(e));
        let now_ms = Utc::now().timestamp_millis();
        let idx = match reuse_id {
            None => t
                .create(&mut lock(&self.clock), now_ms)
                .ok_or_else(|| EmulatorError::InvalidConfig("an Invoice needs at least one Customer and one Item to refer to".into()))?,
            Some(id) => {
                let Some(idx) = t.slot_of(id) else {
                    return Err(EmulatorError::UnknownId { entity: e.name().into(), id: id.trim().into() });
                };
                if !t.recreate(idx, &mut lock(&self.clock), now_ms) {
                    return Err(EmulatorError::IdInUse { entity: e.name().into(), id: id.trim().into() });
                }
                idx
            }
        };
        let json = t.recs[idx].json.clone();
        drop(t);
        lock(&self.stats).creates += 1;
        Ok(json)
    }

    /// The deleted records of `e`, ascending by deletion time (always empty for name lists).
    pub(crate) fn deleted(&self, e: Entity) -> Vec<DeletedRow> {
        let t = rl(self.table(e));
        t.deletions.iter().map(|&(ms, idx)| DeletedRow { id: t.recs[idx as usize].id.to_string(), deleted_at: utc_of_millis(ms) }).collect()
    }
}
