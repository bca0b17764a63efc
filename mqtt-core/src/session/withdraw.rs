//! Taking back a publish whose caller gave up before it was accepted: the client learns that
//! when it cannot deliver the answer to `publish` (the future was dropped). Until its first
//! PUBLISH is written the message has not reached the wire, so it can still be taken back:
//! its record is removed (or never stored) and it is never sent.

use super::{PublishId, Session};
use crate::packet::{Packet, Publish};
use crate::store::StoreOp;

/// What [`Session::withdraw`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// Taken back: it is never sent, and its record is never stored, or removed with the next
    /// output. `unwritten` names the packet identifier of a PUBLISH for it that an output
    /// already handed to the driver: the driver must not write that packet (it takes it out
    /// with [`take_unwritten_publish`], and, if it announced a Topic Alias, tells
    /// [`Session::unannounce_alias`]).
    Taken {
        /// The identifier of the PUBLISH the driver holds and must drop, if any.
        unwritten: Option<u16>,
    },
    /// Too late: it may be on the wire already, or it left the session (acknowledged,
    /// expired, dropped). It goes on as accepted.
    TooLate,
}

/// The Topic Alias a PUBLISH announces: it carries both the topic and the alias.
pub fn announced_alias(publish: &Publish) -> Option<u16> {
    publish
        .properties
        .topic_alias
        .filter(|_| !publish.topic.is_empty())
}

impl Session {
    /// Takes back the publish `id`, accepted by [`Session::publish`], if it has not reached
    /// the wire. Call it only for a publish whose caller was never told it was accepted.
    pub fn withdraw(&mut self, id: PublishId) -> Withdrawn {
        let (unwritten, class) =
            match self.outbound.flows.get(&id) {
                Some(flow) if flow.queued && flow.first_sent_in > self.out.written => {
                    let (packet_id, class) = (flow.packet_id, flow.class);
                    if let Some(flow) = self.outbound.flows.remove(&id) {
                        self.outbound.ids.remove(flow.packet_id);
                        self.outbound.by_packet_id.remove(&flow.packet_id);
                        if let Some(conn) = self.connection.as_mut().filter(|_| flow.holds_quota) {
                            conn.send_quota =
                                conn.send_quota.saturating_add(1).min(conn.receive_maximum);
                        }
                    }
                    (self.drop_pending_publish(packet_id), class)
                }
                Some(_) => return Withdrawn::TooLate,
                None => {
                    let Some(class) = self.classes_by_rank().into_iter().find(|class| {
                        self.with_queue(*class, |s| s.queue.take_back(id)) == Some(true)
                    }) else {
                        return Withdrawn::TooLate;
                    };
                    self.backlog.release_id(id, &mut self.out.pending.commit);
                    (None, class)
                }
            };
        self.outbound.forget_deadline(id);
        self.take_back_record(id, class);
        // Its quota may let the next message go.
        self.drain();
        Withdrawn::Taken { unwritten }
    }

    /// Takes the queue record of `id`, in the queue of `class`, back: out of the output being
    /// gathered when it stores it, else removed from the store.
    fn take_back_record(&mut self, id: PublishId, class: u8) {
        let ops = &mut self.out.pending.commit;
        let pushed = |op: &StoreOp| match op {
            StoreOp::PushQueue { seq, .. } | StoreOp::PushClassQueue { seq, .. } => *seq == id,
            _ => false,
        };
        if ops.ops().iter().any(pushed) {
            ops.retain(|op| !pushed(op));
        } else {
            ops.push(super::classes::class_removal(class, id));
        }
    }

    /// Drops the PUBLISH under `packet_id` from the output being gathered; `Some(packet_id)`
    /// when it is not there (an output the driver holds has it).
    fn drop_pending_publish(&mut self, packet_id: u16) -> Option<u16> {
        let pending = &mut self.out.pending;
        match take_unwritten_publish(&mut [&mut pending.early, &mut pending.send], packet_id) {
            Unwritten::NotFound => Some(packet_id),
            Unwritten::Plain => None,
            Unwritten::Announced {
                alias,
                topic,
                reannounced,
            } => {
                if !reannounced {
                    self.forget_announcement(alias, &topic);
                }
                None
            }
        }
    }

    /// The driver dropped an unwritten PUBLISH that announced Topic Alias `alias` for
    /// `topic` ([`take_unwritten_publish`] over the packets it holds, which go out before
    /// the output being gathered here). Unless a packet after it announced the alias again
    /// (`reannounced`), the PUBLISHes gathered here that use the alias alone get the topic
    /// back, and the next use of the topic announces the alias again.
    pub fn unannounce_alias(&mut self, alias: u16, topic: &str, reannounced: bool) {
        if reannounced {
            return;
        }
        let pending = &mut self.out.pending;
        restore_topic(&mut [&mut pending.early, &mut pending.send], alias, topic);
        self.forget_announcement(alias, topic);
    }

    /// Marks `alias` unannounced if it still maps `topic` (a later announcement may have
    /// given it to another topic: then that one stands).
    fn forget_announcement(&mut self, alias: u16, topic: &str) {
        if let Some(conn) = self.connection.as_mut() {
            conn.aliases.unannounce(alias, topic);
        }
    }
}

/// What [`take_unwritten_publish`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwritten {
    /// No PUBLISH with that packet identifier.
    NotFound,
    /// Removed; it announced no Topic Alias.
    Plain,
    /// Removed; it announced `alias` for `topic`. The PUBLISHes after it that used the alias
    /// alone carry the topic again, up to the next announcement of the alias
    /// (`reannounced`: there was one among the packets given).
    Announced {
        /// The alias it announced.
        alias: u16,
        /// The topic it announced it for.
        topic: String,
        /// Whether a later packet announced the alias again.
        reannounced: bool,
    },
}

/// Removes the PUBLISH under `packet_id` from `lists` (packets in the order they go on the
/// wire) and repairs what relied on it: a PUBLISH after it that used the alias it announced
/// alone gets its topic back (and so announces the alias itself), up to the next
/// announcement of the alias; those before it used the alias as the server knew it then.
pub fn take_unwritten_publish(lists: &mut [&mut Vec<Packet>], packet_id: u16) -> Unwritten {
    let is_it = |packet: &Packet| matches!(packet, Packet::Publish(p) if p.packet_id == packet_id);
    let Some((list, at)) = lists
        .iter()
        .enumerate()
        .find_map(|(i, list)| list.iter().position(is_it).map(|at| (i, at)))
    else {
        return Unwritten::NotFound;
    };
    let Some(Packet::Publish(dropped)) = lists.get_mut(list).map(|l| l.remove(at)) else {
        return Unwritten::NotFound;
    };
    let Some(alias) = announced_alias(&dropped) else {
        return Unwritten::Plain;
    };
    let (first, later) = lists.split_at_mut(list + 1);
    let mut after: Vec<&mut [Packet]> = Vec::with_capacity(later.len() + 1);
    if let Some(rest) = first.last_mut().and_then(|l| l.get_mut(at..)) {
        after.push(rest);
    }
    after.extend(later.iter_mut().map(|l| l.as_mut_slice()));
    let reannounced = restore_topic(&mut after, alias, &dropped.topic);
    Unwritten::Announced {
        alias,
        topic: dropped.topic,
        reannounced,
    }
}

/// Gives PUBLISHes in `lists` (in wire order) that use `alias` alone `topic`, up to the first
/// that announces the alias: whether there was one.
fn restore_topic<L: AsMut<[Packet]>>(lists: &mut [L], alias: u16, topic: &str) -> bool {
    for list in lists {
        for packet in list.as_mut() {
            if let Packet::Publish(p) = packet
                && p.properties.topic_alias == Some(alias)
            {
                if !p.topic.is_empty() {
                    return true;
                }
                p.topic = topic.to_owned();
            }
        }
    }
    false
}
