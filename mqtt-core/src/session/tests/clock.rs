//! The session's clock across steps of the system clock: what was stamped before a step keeps
//! its age, in memory, in the store beyond the window, and across a restart.

use super::*;
use crate::store::QueueWindow;

const DAY_MS: u64 = 86_400_000;

fn expiring(payload: &'static str, secs: u32) -> Publish {
    let mut p = Publish::new("t/1", payload);
    p.qos = QoS::AtLeastOnce;
    p.properties.message_expiry_interval = Some(secs);
    p
}

fn expired(events: &[Event]) -> Vec<PublishId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Expired { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_step_moves_what_was_stamped_before_it_so_that_nothing_expires_at_once() {
    let mut h = Harness::new();
    h.session.tick(NOW_MS);
    let id = h.session.publish(expiring("ten seconds", 10)).unwrap();
    h.flush();
    // The system clock was a day behind: it steps, and the client's clock with it.
    h.session.clock_stepped(DAY_MS as i64);
    h.session.tick(NOW_MS + DAY_MS + 9_999);
    assert!(expired(&h.events()).is_empty(), "expired at once");
    h.session.tick(NOW_MS + DAY_MS + 10_000);
    assert_eq!(expired(&h.events()), vec![id], "kept past its deadline");
}

#[test]
fn records_beyond_the_window_are_corrected_as_they_are_read_back() {
    let mut options = options();
    options.queue_window = QueueWindow::new(1, 1 << 20);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.session.tick(NOW_MS);
    for payload in ["a", "b", "c"] {
        h.session.publish(expiring(payload, 10)).unwrap();
    }
    h.flush();
    h.session.clock_stepped(DAY_MS as i64);
    h.session.tick(NOW_MS + DAY_MS + 5_000);
    h.flush();
    let mut sent = h.connack(false, None);
    for _ in 0..6 {
        if let Some(read) = h.session.poll_queue_read() {
            let records = h.store.read_queue(read.from, read.window);
            h.session.queue_read(records).unwrap();
        }
        sent.extend(h.flush());
    }
    let remaining: Vec<Option<u32>> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.properties.message_expiry_interval),
            _ => None,
        })
        .collect();
    assert_eq!(
        remaining,
        vec![Some(5), Some(5), Some(5)],
        "sent with what remains"
    );
    assert!(expired(&h.events()).is_empty());
}

#[test]
fn a_restart_after_a_step_reads_the_correction_kept_in_the_metadata() {
    let mut h = Harness::new();
    h.session.tick(NOW_MS);
    let id = h.session.publish(expiring("ten seconds", 10)).unwrap();
    h.flush();
    h.session.clock_stepped(DAY_MS as i64);
    h.flush();
    // Killed, and started again with the clock right.
    h.session = Session::new(options(), h.store.stored(), NOW_MS + DAY_MS + 1_000).unwrap();
    h.session.tick(NOW_MS + DAY_MS + 9_999);
    assert!(
        expired(&h.events()).is_empty(),
        "expired at once after the restart"
    );
    h.session.tick(NOW_MS + DAY_MS + 10_000);
    assert_eq!(expired(&h.events()), vec![id]);
}

/// A gateway without a real-time clock: it boots with its clock behind what the session saw
/// (1970), so the client runs from the session's last stamp; when the system clock steps to
/// the right time, what was stamped since the unsure start keeps its age, and what came before
/// it ages by the real downtime: a message that expired meanwhile expires, no other does.
#[test]
fn after_an_unsure_start_a_step_ages_the_old_by_the_downtime_and_the_new_not_at_all() {
    let mut h = Harness::new();
    h.session.tick(NOW_MS);
    let old = h.session.publish(expiring("an hour", 3_600)).unwrap();
    h.flush();
    let floor = h.session.clock_floor_ms().unwrap();
    // Power lost for a day; boots in 1970, so the client starts from the floor.
    h.session = Session::new(options(), h.store.stored(), floor).unwrap();
    h.session.clock_unsure();
    h.session.tick(floor);
    let new = h.session.publish(expiring("ten seconds", 10)).unwrap();
    h.flush();
    // It reboots at once, again in 1970: the clock goes on from the session's stamp.
    h.session = Session::new(options(), h.store.stored(), floor).unwrap();
    h.session.clock_unsure();
    h.session.tick(floor);
    h.flush();
    // NTP: the clock steps to the real time, a day and a moment later.
    h.session.clock_stepped(DAY_MS as i64);
    h.session.tick(floor + DAY_MS + 1_000);
    assert_eq!(
        expired(&h.events()),
        vec![old],
        "the hour ran out during the downtime"
    );
    h.session.tick(floor + DAY_MS + 10_000);
    assert_eq!(expired(&h.events()), vec![new]);
}

#[test]
fn a_correction_goes_once_the_queue_drains_past_it() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session.tick(NOW_MS);
    h.session.publish(expiring("m", 10)).unwrap();
    h.session.clock_stepped(1_000);
    h.flush();
    assert_eq!(h.store.stored().meta.unwrap().clock.corrections.len(), 1);
    h.session.handle_puback(&PubAck::new(1));
    h.flush();
    h.session.tick(NOW_MS + 1_000 + clock_stamp());
    h.flush();
    assert!(h.store.stored().meta.unwrap().clock.corrections.is_empty());
}

fn clock_stamp() -> u64 {
    super::super::clock::CLOCK_STAMP_MS
}
