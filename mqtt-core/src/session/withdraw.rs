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
    /// already handed to the driver: the driver must not write that packet (and, if it
    /// announced a Topic Alias, tell [`Session::unannounce_alias`]).
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
        let unwritten = match self.outbound.flows.get(&id) {
            Some(flow) if flow.queued && flow.first_sent_in > self.out.written => {
                let packet_id = flow.packet_id;
                if let Some(flow) = self.outbound.flows.remove(&id) {
                    self.outbound.ids.remove(flow.packet_id);
                    self.outbound.by_packet_id.remove(&flow.packet_id);
                    if let Some(conn) = self.connection.as_mut().filter(|_| flow.holds_quota) {
                        conn.send_quota =
                            conn.send_quota.saturating_add(1).min(conn.receive_maximum);
                    }
                }
                self.drop_pending_publish(packet_id)
            }
            Some(_) => return Withdrawn::TooLate,
            None if self.queue.take_back(id) => {
                self.backlog.release_id(id, &mut self.out.pending.commit);
                None
            }
            None => return Withdrawn::TooLate,
        };
        self.outbound.forget_deadline(id);
        let ops = &mut self.out.pending.commit;
        let stored = !ops
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::PushQueue { seq, .. } if *seq == id));
        if stored {
            ops.push(StoreOp::RemoveQueue { seq: id });
        } else {
            ops.retain(|op| !matches!(op, StoreOp::PushQueue { seq, .. } if *seq == id));
        }
        // Its quota may let the next message go.
        self.drain();
        Withdrawn::Taken { unwritten }
    }

    /// Drops the PUBLISH under `packet_id` from the output being gathered; `Some(packet_id)`
    /// when it is not there (an output the driver holds has it).
    fn drop_pending_publish(&mut self, packet_id: u16) -> Option<u16> {
        let mut dropped = None;
        for list in [&mut self.out.pending.early, &mut self.out.pending.send] {
            list.retain(|packet| match packet {
                Packet::Publish(p) if p.packet_id == packet_id => {
                    dropped = Some(announced_alias(p));
                    false
                }
                _ => true,
            });
        }
        match dropped {
            Some(Some(alias)) => {
                self.unannounce_alias(alias);
                None
            }
            Some(None) => None,
            None => Some(packet_id),
        }
    }

    /// A PUBLISH that announced Topic Alias `alias` (it carried topic and alias) was dropped
    /// unwritten: the server never learns the mapping from it. PUBLISHes after it that use the
    /// alias alone get the topic back: those in the output being gathered here, and, with the
    /// topic this returns, those the driver holds unwritten. The next use of the topic
    /// announces the alias again.
    pub fn unannounce_alias(&mut self, alias: u16) -> Option<String> {
        let topic = self.connection.as_mut()?.aliases.unannounce(alias)?;
        for list in [&mut self.out.pending.early, &mut self.out.pending.send] {
            restore_topic(list, alias, &topic);
        }
        Some(topic)
    }
}

/// Gives PUBLISHes in `packets` that use `alias` alone their `topic` again.
pub fn restore_topic(packets: &mut [Packet], alias: u16, topic: &str) {
    for packet in packets {
        if let Packet::Publish(p) = packet
            && p.topic.is_empty()
            && p.properties.topic_alias == Some(alias)
        {
            p.topic = topic.to_owned();
        }
    }
}
