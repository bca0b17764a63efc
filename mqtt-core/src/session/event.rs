//! What the engine tells the driver and the application.

use super::{MessageTag, PublishId, RequestId};
use crate::packet::{AckProperties, Publish, ReasonCode};

/// What the application learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server acknowledged a QoS 1 publish (PUBACK) or completed a QoS 2 one (PUBCOMP).
    Delivered {
        /// The publish.
        id: PublishId,
        /// The reason code of PUBACK or PUBCOMP.
        reason: ReasonCode,
    },
    /// A queued publish whose Message Expiry Interval ran out before it could be sent: it was
    /// dropped from the store and never sent.
    Expired {
        /// The publish.
        id: PublishId,
        /// Its topic.
        topic: String,
    },
    /// A queued publish dropped, unsent, to make room for newer ones
    /// ([`Session::drop_oldest_queued`](super::Session::drop_oldest_queued)).
    Dropped {
        /// The publish.
        id: PublishId,
        /// Its topic.
        topic: String,
    },
    /// A queued publish to a latest-value topic, dropped unsent because a newer value of the
    /// topic was queued ([`BacklogPolicy::latest_value_topics`](super::BacklogPolicy::latest_value_topics)):
    /// it left the store in the commit that stored the newer one.
    Replaced {
        /// The publish dropped.
        id: PublishId,
        /// The publish that replaced it.
        by: PublishId,
        /// Their topic.
        topic: String,
    },
    /// The server refused a publish (PUBACK or PUBREC with a reason code of 0x80 or more), or it
    /// could not be sent (it exceeds the server's limits). A retransmission that no longer fits
    /// the server's Maximum Packet Size after a reconnect fails too (0x95); its first
    /// transmission may have reached the server. At QoS 2 it is then released with PUBREL,
    /// which frees its packet identifier at the server, and its PUBCOMP reports nothing more.
    Failed {
        /// The publish.
        id: PublishId,
        /// Why.
        reason: ReasonCode,
    },
    /// A message from the server, to hand to the application.
    Message {
        /// What to pass to [`Session::ack`](super::Session::ack) (QoS 1/2 with manual ack).
        tag: MessageTag,
        /// The message, its topic resolved if it came by Topic Alias.
        publish: Publish,
    },
    /// The server accepted the connection.
    Connected {
        /// Whether the server resumed the session.
        session_present: bool,
        /// Everything CONNACK said (limits, Assigned Client Identifier, Server Reference,
        /// Response Information, Reason String, User Properties).
        properties: Box<crate::packet::ConnAckProperties>,
        /// How many kept subscriptions are being made again (SUBSCRIBE goes out before
        /// anything else; their SUBACKs come as [`Event::Subscribed`]).
        resubscribed: usize,
    },
    /// SUBACK: one reason code per subscription, in order (granted QoS, or why it failed).
    Subscribed {
        /// The request.
        id: RequestId,
        /// One per subscription.
        reason_codes: Vec<ReasonCode>,
        /// Reason String and User Properties.
        properties: AckProperties,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE that cannot go out on this connection (it does not fit
    /// the server's Maximum Packet Size, which may have shrunk since it was made): never sent.
    /// A caller's request fails with it; a kept subscription (made again after a lost
    /// session) or a request in doubt keeps its record and is tried again on the next
    /// connection.
    RequestNotSent {
        /// The request.
        id: RequestId,
        /// Its Topic Filters.
        filters: Vec<String>,
        /// Why it cannot be encoded.
        error: crate::packet::EncodeError,
    },
    /// UNSUBACK: one reason code per Topic Filter, in order.
    Unsubscribed {
        /// The request.
        id: RequestId,
        /// One per filter.
        reason_codes: Vec<ReasonCode>,
        /// Reason String and User Properties.
        properties: AckProperties,
    },
    /// The server closed the connection with DISCONNECT.
    ServerDisconnected {
        /// Its reason code.
        reason: ReasonCode,
        /// Its Reason String.
        reason_string: Option<String>,
        /// Another server to use (with 0x9C Use another server or 0x9D Server moved).
        server_reference: Option<String>,
    },
    /// The session's expiry passed while the client was away (or its interval was 0): the
    /// server no longer has it. [`Event::SessionLost`] follows when anything was dropped.
    SessionExpired,
    /// The server sent no PINGRESP in time: the connection is dead; close it.
    KeepAliveTimeout,
    /// The server refused the connection.
    ConnectionRefused {
        /// Its reason code.
        reason: ReasonCode,
        /// Another server to use, with 0x9C Use Another Server or 0x9D Server Moved.
        server_reference: Option<String>,
    },
    /// The server had no session although the client had one: QoS 1/2 publishes that may
    /// have reached it are sent again as new messages or discarded, as
    /// [`SessionOptions::lost_session`](super::SessionOptions::lost_session) says; messages
    /// past PUBREC are taken as delivered.
    SessionLost {
        /// How many publishes are sent again (`LostSession::Republish`): those in flight, and
        /// after a restart those queued before it (they may have gone out).
        resent: usize,
        /// How many publishes were discarded (`LostSession::Discard`), each reported by
        /// [`Event::Discarded`].
        discarded: usize,
        /// How many PUBREL flows were dropped (the server had received their messages).
        dropped_pubrel: usize,
        /// How many inbound PUBREC markers were dropped.
        dropped_inbound: usize,
    },
    /// A publish that may have reached a session the server lost was discarded
    /// (`LostSession::Discard`): it is not sent again, and its delivery fails.
    Discarded {
        /// The publish.
        id: PublishId,
        /// Its topic.
        topic: String,
    },
}
