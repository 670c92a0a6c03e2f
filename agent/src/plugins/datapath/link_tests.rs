//! The link's ownership across a hot swap (module doc of `link.rs`), without a plugin: the rings
//! and I/O threads are real, nobody is at their other end.

use super::*;
use crate::plugins::ledger::LedgerMetrics;

fn link() -> Arc<Link> {
    let ledger = Arc::new(Ledger::new("l", 16, &LedgerMetrics::new(None)));
    Arc::new(Link::new(
        "l",
        Role::Processor,
        DataPathConfig::default(),
        DataPathMetrics::new(None),
        ledger,
    ))
}

fn current(l: &Link) -> Option<u64> {
    l.lock().current.as_ref().map(|a| a.generation)
}

fn draining(l: &Link) -> Option<u64> {
    l.lock().draining.as_ref().map(|a| a.generation)
}

#[test]
fn an_old_supervisor_restarting_after_the_takeover_cannot_demote_the_new_incarnation() {
    let l = link();
    let old = l.attach(l.prepare().unwrap(), Slot::A).unwrap();
    // The old incarnation died just before the swap's new one became ready…
    l.detach(old);
    let new = l.takeover(l.prepare().unwrap(), Slot::B).unwrap();
    assert_eq!(current(&l), Some(new));
    // …and its supervisor restarted it: that incarnation must not become current.
    let again = l.attach(l.prepare().unwrap(), Slot::A);
    assert!(
        matches!(again, Err(AttachError::Superseded)),
        "the swapped-out supervisor attached: {again:?}"
    );
    assert_eq!(current(&l), Some(new));
    assert_eq!(draining(&l), None);
    // The new supervisor's own restarts still attach.
    l.detach(new);
    let restarted = l.attach(l.prepare().unwrap(), Slot::B).unwrap();
    assert_eq!(current(&l), Some(restarted));
    l.detach(restarted);
}

#[test]
fn a_batch_in_flight_follows_the_takeover_and_the_old_one_drains_only_its_own() {
    let l = link();
    let old = l.attach(l.prepare().unwrap(), Slot::A).unwrap();
    let records = || Records::Logs(Default::default());
    let permit = || Arc::new(l.window.clone().try_acquire_owned().expect("a window slot"));
    l.submit(records(), permit());
    let new = l.takeover(l.prepare().unwrap(), Slot::B).unwrap();
    assert_eq!((current(&l), draining(&l)), (Some(new), Some(old)));
    l.submit(records(), permit());
    let gens: Vec<u64> = l.lock().in_flight.values().map(|f| f.generation).collect();
    assert_eq!(
        gens,
        [old, new],
        "the old one keeps its batch, new ones go to the new one"
    );
    assert!(!l.drained(old));
    // The old one never answered: detached, its batch goes to the new one.
    l.detach(old);
    let gens: Vec<u64> = l.lock().in_flight.values().map(|f| f.generation).collect();
    assert_eq!(gens, [new, new]);
    assert!(l.drained(old));
    l.detach(new);
}

#[test]
fn only_the_owner_parks_the_link_and_a_takeover_unparks_it() {
    let l = link();
    let old = l.attach(l.prepare().unwrap(), Slot::A).unwrap();
    l.detach(old);
    // The old supervisor quarantined its plugin: parked (its stage stops waiting for it).
    l.park(true, Slot::A);
    assert!(l.is_parked());
    // An upgrade to a fixed version: the new incarnation serves, the link is not parked.
    let new = l.takeover(l.prepare().unwrap(), Slot::B).unwrap();
    assert!(
        !l.is_parked(),
        "the stage would drop every batch as unavailable"
    );
    // The swapped-out supervisor (quarantined again, or answering the drain from its park)
    // cannot park the link the new one serves.
    l.park(true, Slot::A);
    assert!(!l.is_parked());
    l.park(true, Slot::B);
    assert!(l.is_parked());
    l.detach(new);
}
