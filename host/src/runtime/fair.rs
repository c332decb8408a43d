//! Fair shares of a shared pool (plugin instances, delivery workers) between tenants
//! (issue 11; SPEC H-3, H-4, H-6): a tenant may use idle capacity, but never starve another.
//!
//! The policy, checked on every acquisition (a slot is never taken away once given: an
//! invocation cannot be preempted, so fairness is kept by refusing, not by revoking):
//!
//! * **Fair share.** A tenant holds at most `max(1, capacity / active)` slots, where `active`
//!   counts the tenants holding a slot or waiting for one (itself included). Alone, a tenant's
//!   share is the whole pool; when a second one arrives, the first one's share halves, and
//!   what it holds above its new share returns to the others as its invocations end.
//! * **A reserve for newcomers.** The last `reserve` free slots go only to tenants that hold
//!   none. Without it, a tenant alone could take every slot with slow work (a hung CRM holds
//!   each for its whole wall clock), and the next tenant to arrive would wait for the first
//!   one's work to time out: the fair share would only start to count seconds later. With it,
//!   a newcomer always finds a slot at once unless `reserve` other newcomers took them.
//!
//! A pool counts units: one per slot for instances and workers, MiB for the memory budget
//! (an invocation takes its memory limit's worth, [`FairPool::try_acquire_units`]). A tenant
//! holding none may always take what one invocation asks if it is free, even above its share.
//!
//! [`FairPool::try_acquire`] answers at once (IVR look-ups fall back rather than wait);
//! [`FairPool::acquire`] waits its turn: waiters are served first come first served among
//! those the policy admits, so no tenant's waiter is passed over forever. A slot is given
//! back when its [`FairPermit`] is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The reserve for newcomers when the operator sets none: an eighth of the pool (16 of the
/// default 128 instances, 4 of the default 32 delivery workers); none in a pool of one.
pub fn default_reserve(capacity: usize) -> usize {
    if capacity < 2 {
        0
    } else {
        (capacity / 8).max(1)
    }
}

/// A pool of `capacity` slots shared fairly by tenant. Cheap to clone (one pool).
#[derive(Clone)]
pub struct FairPool {
    shared: Arc<Shared>,
}

struct Shared {
    capacity: usize,
    reserve: usize,
    state: Mutex<State>,
    /// Notified (all waiters) whenever a slot is released or a waiter leaves the queue.
    changed: Notify,
}

#[derive(Default)]
struct State {
    in_use: usize,
    /// Units held per tenant (no entry: none).
    held: HashMap<Arc<str>, usize>,
    /// Waiters and declared demand per tenant (no entry: none): these tenants are active.
    waiting: HashMap<Arc<str>, usize>,
    /// Waiters of [`FairPool::acquire`]: (ticket, tenant, units), oldest first.
    queue: VecDeque<(u64, Arc<str>, usize)>,
    next_ticket: u64,
}

/// Why a slot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tenant holds its fair share while other tenants are active.
    #[error(
        "{held} in use by this tenant, its fair share with {active} tenants active is {share} of {capacity}"
    )]
    ShareExhausted {
        held: usize,
        share: usize,
        active: usize,
        capacity: usize,
    },
    /// Only the reserve for tenants that hold none is left.
    #[error(
        "{held} in use by this tenant; the last {reserve} of {capacity} are kept for other tenants"
    )]
    Reserved {
        held: usize,
        reserve: usize,
        capacity: usize,
    },
    /// Not enough is free (the rest is in use by other tenants within their shares).
    #[error("{free} of {capacity} free, {asked} asked")]
    Full {
        asked: usize,
        free: usize,
        capacity: usize,
    },
}

/// One slot of a [`FairPool`], held by a tenant until dropped.
pub struct FairPermit {
    shared: Arc<Shared>,
    tenant: Arc<str>,
    units: usize,
}

/// A tenant declared active without holding a slot (see [`FairPool::demand`]).
pub struct Demand {
    shared: Arc<Shared>,
    tenant: Arc<str>,
}

/// A waiter's place in the queue; leaves it when dropped (granted or cancelled).
struct Ticket<'a> {
    shared: &'a Shared,
    id: u64,
    tenant: Arc<str>,
    queued: bool,
}

impl FairPool {
    /// A pool of `capacity` slots (at least 1) of which the last `reserve` go only to tenants
    /// that hold none (at most `capacity - 1`).
    pub fn new(capacity: usize, reserve: usize) -> FairPool {
        let capacity = capacity.max(1);
        FairPool {
            shared: Arc::new(Shared {
                capacity,
                reserve: reserve.min(capacity - 1),
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.shared.lock().in_use
    }

    /// Slots `tenant` holds now.
    pub fn held_by(&self, tenant: &str) -> usize {
        self.shared.lock().held.get(tenant).copied().unwrap_or(0)
    }

    /// A slot now, or why not. Does not queue: a waiter of [`FairPool::acquire`] that the
    /// policy admits too may lose this slot to the caller (it gets the next one).
    pub fn try_acquire(&self, tenant: &str) -> Result<FairPermit, Refusal> {
        self.try_acquire_units(tenant, 1)
    }

    /// [`FairPool::try_acquire`] of `units` (at least 1, at most the capacity).
    pub fn try_acquire_units(&self, tenant: &str, units: usize) -> Result<FairPermit, Refusal> {
        let units = units.clamp(1, self.shared.capacity);
        let tenant: Arc<str> = tenant.into();
        let mut state = self.shared.lock();
        self.shared.admits(&state, &tenant, units)?;
        Ok(self.grant(&mut state, tenant, units))
    }

    /// Wait for a slot. The tenant counts as active while it waits; among waiting tenants the
    /// policy admits, the oldest waiter goes first. Cancel-safe: a dropped wait leaves the
    /// queue.
    pub async fn acquire(&self, tenant: &str) -> FairPermit {
        self.acquire_units(tenant, 1).await
    }

    /// [`FairPool::acquire`] of `units` (at least 1, at most the capacity).
    pub async fn acquire_units(&self, tenant: &str, units: usize) -> FairPermit {
        let units = units.clamp(1, self.shared.capacity);
        let tenant: Arc<str> = tenant.into();
        let mut ticket = {
            let mut state = self.shared.lock();
            let id = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back((id, tenant.clone(), units));
            *state.waiting.entry(tenant.clone()).or_default() += 1;
            Ticket {
                shared: &self.shared,
                id,
                tenant: tenant.clone(),
                queued: true,
            }
        };
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a release between the look and the wait wakes us.
            changed.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if self.shared.first_admitted(&state) == Some(ticket.id) {
                    ticket.leave(&mut state);
                    let permit = self.grant(&mut state, tenant, units);
                    // The next waiter may be admitted too (more than one slot free).
                    if state.in_use < self.shared.capacity && !state.queue.is_empty() {
                        self.shared.changed.notify_waiters();
                    }
                    return permit;
                }
            }
            changed.await;
        }
    }

    /// Count `tenant` as active (waiting) until the guard is dropped, without queueing: for a
    /// dispatcher that polls with [`FairPool::try_acquire`] and knows which tenants have work
    /// waiting, so that the shares of the others shrink for them.
    pub fn demand(&self, tenant: &str) -> Demand {
        let tenant: Arc<str> = tenant.into();
        *self
            .shared
            .lock()
            .waiting
            .entry(tenant.clone())
            .or_default() += 1;
        Demand {
            shared: self.shared.clone(),
            tenant,
        }
    }

    fn grant(&self, state: &mut State, tenant: Arc<str>, units: usize) -> FairPermit {
        state.in_use += units;
        *state.held.entry(tenant.clone()).or_default() += units;
        FairPermit {
            shared: self.shared.clone(),
            tenant,
            units,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the policy gives `tenant` `units` now.
    fn admits(&self, state: &State, tenant: &Arc<str>, units: usize) -> Result<(), Refusal> {
        let capacity = self.capacity;
        let free = capacity - state.in_use.min(capacity);
        if units > free {
            return Err(Refusal::Full {
                asked: units,
                free,
                capacity,
            });
        }
        let held = state.held.get(tenant).copied().unwrap_or(0);
        let others_active = state.held.keys().filter(|t| *t != tenant).count()
            + state
                .waiting
                .keys()
                .filter(|t| *t != tenant && !state.held.contains_key(*t))
                .count();
        let active = others_active + 1;
        let share = (capacity / active).max(1);
        if held > 0 && held + units > share {
            return Err(Refusal::ShareExhausted {
                held,
                share,
                active,
                capacity,
            });
        }
        if held > 0 && free - units < self.reserve {
            return Err(Refusal::Reserved {
                held,
                reserve: self.reserve,
                capacity,
            });
        }
        Ok(())
    }

    /// The ticket of the oldest waiter the policy admits now.
    fn first_admitted(&self, state: &State) -> Option<u64> {
        state
            .queue
            .iter()
            .find(|(_, tenant, units)| self.admits(state, tenant, *units).is_ok())
            .map(|(id, _, _)| *id)
    }
}

impl Ticket<'_> {
    /// Leave the queue with the slot granted (under the caller's lock).
    fn leave(&mut self, state: &mut State) {
        remove_waiter(state, self.id, &self.tenant);
        self.queued = false;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        remove_waiter(&mut self.shared.lock(), self.id, &self.tenant);
        // A cancelled waiter may have been the one the others were letting go first.
        self.shared.changed.notify_waiters();
    }
}

fn remove_waiter(state: &mut State, id: u64, tenant: &Arc<str>) {
    if let Some(at) = state.queue.iter().position(|(t, _, _)| *t == id) {
        state.queue.remove(at);
    }
    decrement(&mut state.waiting, tenant, 1);
}

fn decrement(map: &mut HashMap<Arc<str>, usize>, tenant: &Arc<str>, by: usize) {
    if let Some(n) = map.get_mut(tenant) {
        *n = n.saturating_sub(by);
        if *n == 0 {
            map.remove(tenant);
        }
    }
}

impl FairPermit {
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.in_use = state.in_use.saturating_sub(self.units);
            decrement(&mut state.held, &self.tenant, self.units);
        }
        self.shared.changed.notify_waiters();
    }
}

impl Drop for Demand {
    fn drop(&mut self) {
        decrement(&mut self.shared.lock().waiting, &self.tenant, 1);
        self.shared.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn take(pool: &FairPool, tenant: &str, n: usize) -> Vec<FairPermit> {
        (0..n)
            .map(|i| {
                pool.try_acquire(tenant)
                    .unwrap_or_else(|e| panic!("{tenant}'s slot {i}: {e}"))
            })
            .collect()
    }

    #[test]
    fn a_tenant_alone_uses_all_but_the_reserve() {
        let pool = FairPool::new(8, 2);
        let held = take(&pool, "a", 6);
        assert_eq!(
            pool.try_acquire("a").err(),
            Some(Refusal::Reserved {
                held: 6,
                reserve: 2,
                capacity: 8
            })
        );
        assert_eq!(pool.in_use(), 6);
        drop(held);
        // Without a reserve, a tenant alone may use the whole pool.
        let pool = FairPool::new(8, 0);
        let _all = take(&pool, "a", 8);
        assert_eq!(
            pool.try_acquire("a").err(),
            Some(Refusal::Full {
                asked: 1,
                free: 0,
                capacity: 8
            })
        );
    }

    #[test]
    fn a_busy_tenant_is_capped_when_a_second_arrives() {
        let pool = FairPool::new(8, 1);
        let mut a = take(&pool, "a", 7);
        // The newcomer gets the reserve at once.
        let mut b = take(&pool, "b", 1);
        // Two active: a's share is 4; it holds 7 and gets nothing until it is below 4.
        a.truncate(4);
        assert_eq!(
            pool.try_acquire("a").err(),
            Some(Refusal::ShareExhausted {
                held: 4,
                share: 4,
                active: 2,
                capacity: 8
            })
        );
        // What a gave back goes to b, but not the last slot: that one is kept for a third
        // tenant.
        b.extend(take(&pool, "b", 2));
        assert!(matches!(
            pool.try_acquire("b"),
            Err(Refusal::Reserved { held: 3, .. })
        ));
        // b gets no more than its share either.
        a.truncate(2);
        b.extend(take(&pool, "b", 1));
        assert!(matches!(
            pool.try_acquire("b"),
            Err(Refusal::ShareExhausted {
                held: 4,
                share: 4,
                ..
            })
        ));
        assert_eq!((pool.held_by("a"), pool.held_by("b")), (2, 4));
        // b leaves: a alone again may use the idle capacity.
        drop(b);
        let _more = take(&pool, "a", 5);
        assert_eq!(pool.held_by("a"), 7);
    }

    #[test]
    fn permits_return_on_drop() {
        let pool = FairPool::new(3, 0);
        let held = take(&pool, "a", 3);
        assert_eq!(pool.in_use(), 3);
        drop(held);
        assert_eq!((pool.in_use(), pool.held_by("a")), (0, 0));
        let _again = take(&pool, "b", 3);
    }

    #[test]
    fn declared_demand_shrinks_the_shares_of_the_others() {
        let pool = FairPool::new(8, 0);
        let _a = take(&pool, "a", 2);
        let waiting: Vec<Demand> = ["b", "c", "d"].iter().map(|t| pool.demand(t)).collect();
        assert!(matches!(
            pool.try_acquire("a"),
            Err(Refusal::ShareExhausted {
                held: 2,
                share: 2,
                active: 4,
                ..
            })
        ));
        drop(waiting);
        assert!(pool.try_acquire("a").is_ok());
    }

    #[test]
    fn a_share_is_at_least_one() {
        let pool = FairPool::new(2, 0);
        let _a = take(&pool, "a", 1);
        let _b = take(&pool, "b", 1);
        let _c = pool.demand("c");
        assert_eq!(
            pool.try_acquire("c").err(),
            Some(Refusal::Full {
                asked: 1,
                free: 0,
                capacity: 2
            })
        );
        assert!(matches!(pool.try_acquire("a"), Err(Refusal::Full { .. })));
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_its_share_frees() {
        let pool = FairPool::new(2, 0);
        let mut a = take(&pool, "a", 2);
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.acquire("b").await });
        // Until b waits, a may hold both; once b waits, a's share is 1.
        while pool.shared.lock().queue.is_empty() {
            tokio::task::yield_now().await;
        }
        a.pop();
        assert!(matches!(
            pool.try_acquire("a"),
            Err(Refusal::ShareExhausted {
                held: 1,
                share: 1,
                ..
            })
        ));
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("b was served")
            .unwrap();
        assert_eq!(b.tenant(), "b");
        assert_eq!((pool.held_by("a"), pool.held_by("b")), (1, 1));
    }

    #[tokio::test]
    async fn waiters_are_served_first_come_first_served_and_none_is_starved() {
        let pool = FairPool::new(1, 0);
        let first = take(&pool, "a", 1);
        let mut waiters = Vec::new();
        for tenant in ["b", "c", "a", "d"] {
            let p = pool.clone();
            waiters.push((tenant, tokio::spawn(async move { p.acquire(tenant).await })));
            let n = waiters.len();
            while pool.shared.lock().queue.len() < n {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for (tenant, w) in waiters {
            let permit = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .unwrap_or_else(|_| panic!("{tenant} was starved"))
                .unwrap();
            assert_eq!(permit.tenant(), tenant);
            // A tenant barging in with try_acquire cannot take the slot being handed on:
            // the pool of one is full until the permit is dropped.
            assert!(pool.try_acquire("e").is_err());
            drop(permit);
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_queue() {
        let pool = FairPool::new(1, 0);
        let held = take(&pool, "a", 1);
        let p = pool.clone();
        let waiting = tokio::spawn(async move { p.acquire("b").await });
        while pool.shared.lock().queue.is_empty() {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        {
            let state = pool.shared.lock();
            assert!(state.queue.is_empty() && state.waiting.is_empty());
        }
        drop(held);
        // b no longer counts as active: a alone may take the slot again.
        assert!(pool.try_acquire("a").is_ok());
    }

    #[test]
    fn the_default_reserve_is_an_eighth() {
        assert_eq!(default_reserve(1), 0);
        assert_eq!(default_reserve(2), 1);
        assert_eq!(default_reserve(32), 4);
        assert_eq!(default_reserve(128), 16);
    }

    #[test]
    fn units_are_accounted_and_returned() {
        // A memory budget of 1024 MiB with 128 kept for tenants that hold none.
        let pool = FairPool::new(1024, 128);
        let a: Vec<FairPermit> = (0..14)
            .map(|_| pool.try_acquire_units("a", 64).unwrap())
            .collect();
        assert_eq!((pool.in_use(), pool.held_by("a")), (896, 896));
        assert_eq!(
            pool.try_acquire_units("a", 64).err(),
            Some(Refusal::Reserved {
                held: 896,
                reserve: 128,
                capacity: 1024
            })
        );
        // A newcomer's invocation fits in the reserve; one larger than what is free does not.
        let b = pool.try_acquire_units("b", 64).unwrap();
        assert_eq!(
            pool.try_acquire_units("c", 100).err(),
            Some(Refusal::Full {
                asked: 100,
                free: 64,
                capacity: 1024
            })
        );
        drop(b);
        drop(a);
        assert_eq!(pool.in_use(), 0);
        // A request above the whole budget is clamped to it: it runs alone.
        let huge = pool.try_acquire_units("a", 5000).unwrap();
        assert_eq!(pool.in_use(), 1024);
        drop(huge);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_tenant_holding_none_may_exceed_its_share_once() {
        let pool = FairPool::new(100, 0);
        let _a = pool.try_acquire_units("a", 30).unwrap();
        let _b = pool.try_acquire_units("b", 30).unwrap();
        // Three active: a share of 33; c's 40 is above it but c holds none.
        let _c = pool.try_acquire_units("c", 40).unwrap();
        assert!(matches!(
            pool.try_acquire_units("a", 10),
            Err(Refusal::Full { free: 0, .. })
        ));
    }

    #[tokio::test]
    async fn a_waiter_for_units_is_served_when_enough_is_returned() {
        let pool = FairPool::new(100, 0);
        let first = pool.try_acquire_units("a", 60).unwrap();
        let second = pool.try_acquire_units("b", 30).unwrap();
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.acquire_units("c", 50).await });
        while pool.shared.lock().queue.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(second);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "40 free is not enough for 50");
        drop(first);
        let c = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("c was served")
            .unwrap();
        assert_eq!((c.tenant(), pool.in_use()), ("c", 50));
    }
}
