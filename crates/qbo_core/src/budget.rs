//! A backfill's memory budget: how many bytes of fetched records its windows may hold at once.
//!
//! Without it, what a backfill holds grows with how long its windows run in step: each window
//! has a page arriving, a page waiting and a batch being written, and a run of long windows
//! (1M invoices in 50-day windows) keeps all of them full where a short run never does. The
//! budget makes the bound one number, the same for 200k records or 10M.
//!
//! A window reserves room for a page before requesting it ([`MemoryBudget::reserve`]), resizes
//! the reservation to the page's real size when it arrives ([`Charge::resize`], which may go
//! over: one page per window at most), and the [`Charge`] travels with the records until their
//! batch is written, when dropping it gives the room back.
//!
//! No deadlock: a reservation waits only while something else holds room, and a window never
//! waits while holding records that only it can release (it hands its buffered records to a
//! write first); writes finish on their own, so room always comes back, and when nothing is
//! held any request is granted whatever its size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The default budget: enough for the JSON-lines writer to commit one group while the windows
/// fetch the next (see `sink::jsonl::MAX_GROUP_BYTES`).
pub const DEFAULT_MAX_BUFFER_MB: u32 = 16;

#[derive(Debug)]
pub struct MemoryBudget {
    capacity: u64,
    in_use: Mutex<u64>,
    released: Notify,
    /// The largest page seen so far: what the next request reserves.
    largest_page: AtomicU64,
    /// The most bytes held at once.
    peak: AtomicU64,
}

impl MemoryBudget {
    pub fn new(capacity_bytes: u64) -> Arc<Self> {
        Arc::new(MemoryBudget {
            capacity: capacity_bytes.max(1),
            in_use: Mutex::new(0),
            released: Notify::new(),
            largest_page: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    /// A budget that never makes anyone wait (paths that hold one batch at a time anyway).
    pub fn unlimited() -> Arc<Self> {
        Self::new(u64::MAX)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held now.
    pub fn in_use(&self) -> u64 {
        *self.lock()
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// What to reserve for the next page: the largest page seen so far (at least one byte, so
    /// that before any page is seen a full budget still makes the next reader wait).
    pub fn page_estimate(&self) -> u64 {
        self.largest_page.load(Ordering::Relaxed).max(1)
    }

    /// Remembers a page's size for [`MemoryBudget::page_estimate`].
    pub fn note_page(&self, bytes: u64) {
        self.largest_page.fetch_max(bytes, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, used: &mut u64, bytes: u64) {
        *used = used.saturating_add(bytes);
        self.peak.fetch_max(*used, Ordering::Relaxed);
    }

    /// Room for `bytes` now, if there is (or if nothing is held at all).
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        let mut used = self.lock();
        if *used > 0 && used.saturating_add(bytes) > self.capacity {
            return None;
        }
        self.add(&mut used, bytes);
        Some(Charge { budget: Arc::clone(self), bytes })
    }

    /// Waits until there is room for `bytes` (or nothing is held), then holds it.
    pub async fn reserve(self: &Arc<Self>, bytes: u64) -> Charge {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes us.
            released.as_mut().enable();
            if let Some(charge) = self.try_reserve(bytes) {
                return charge;
            }
            released.await;
        }
    }

    /// An empty charge, to grow with [`Charge::resize`].
    pub fn empty(self: &Arc<Self>) -> Charge {
        Charge { budget: Arc::clone(self), bytes: 0 }
    }

    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut used = self.lock();
        *used = used.saturating_sub(bytes);
        drop(used);
        self.released.notify_waiters();
    }
}

/// Room held in a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Charge {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds exactly `bytes` now, without waiting: growing may take the budget over its
    /// capacity (a page turned out larger than reserved), which later reservations wait out.
    pub fn resize(&mut self, bytes: u64) {
        if bytes > self.bytes {
            let mut used = self.budget.lock();
            self.budget.add(&mut used, bytes - self.bytes);
        } else {
            self.budget.release(self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// Takes over `other`'s room (both must come from the same budget).
    pub fn absorb(&mut self, mut other: Charge) {
        debug_assert!(Arc::ptr_eq(&self.budget, &other.budget), "charges of different budgets");
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn charges_add_up_and_are_given_back_on_drop() {
        let b = MemoryBudget::new(100);
        let mut a = b.try_reserve(30).unwrap();
        let c = b.try_reserve(70).unwrap();
        assert_eq!(b.in_use(), 100);
        assert!(b.try_reserve(1).is_none(), "full");
        a.resize(10);
        assert_eq!(b.in_use(), 80);
        a.resize(50); // over capacity: allowed, never waits
        assert_eq!(b.in_use(), 120);
        assert_eq!(b.peak(), 120);
        let mut whole = b.empty();
        whole.absorb(a);
        whole.absorb(c);
        assert_eq!((whole.bytes(), b.in_use()), (120, 120));
        drop(whole);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn an_oversized_request_is_granted_when_nothing_is_held() {
        let b = MemoryBudget::new(10);
        let big = b.try_reserve(1000).expect("nothing held: granted");
        assert!(b.try_reserve(1).is_none());
        drop(big);
        assert!(b.try_reserve(5).is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reserve_waits_for_room_and_wakes_when_it_is_given_back() {
        let b = MemoryBudget::new(100);
        let held = b.try_reserve(80).unwrap();
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.reserve(50).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no room: it waits");
        assert_eq!(b.in_use(), 80);
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        assert_eq!(got, 50);
        assert_eq!(b.in_use(), 0, "the waiter's charge was dropped with its task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_never_hold_more_than_the_capacity() {
        let b = MemoryBudget::new(100);
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let b = Arc::clone(&b);
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let charge = b.reserve(10 + i % 30).await;
                    assert!(b.in_use() <= 100);
                    tokio::task::yield_now().await;
                    drop(charge);
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("no deadlock").unwrap();
        }
        assert!(b.peak() <= 100 && b.peak() >= 10, "peak {}", b.peak());
        assert_eq!(b.in_use(), 0);
    }
}
