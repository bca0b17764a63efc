//! What the client reports: answers to SUBSCRIBE, connection events and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{ConnectError, ConnectionLoss, StopReason};
use super::url::ServerUrl;
use crate::packet::{AckProperties, ConnAckProperties, ReasonCode};
use crate::store::SessionKey;

/// The server's answer to a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubAckInfo {
    /// One per subscription: the granted QoS, or why it failed.
    pub reason_codes: Vec<ReasonCode>,
    /// Reason String and User Properties.
    pub properties: AckProperties,
}

/// What happened to the connection, for applications that watch ([`Client::events`](super::Client::events)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// CONNACK with Success.
    Connected {
        /// The server.
        server: ServerUrl,
        /// Whether it resumed the session.
        session_present: bool,
        /// Everything CONNACK said.
        properties: Box<ConnAckProperties>,
    },
    /// An attempt failed.
    ConnectFailed {
        /// The server.
        server: ServerUrl,
        /// Why.
        error: ConnectError,
    },
    /// The next attempt is scheduled.
    Reconnecting {
        /// Failed attempts in a row so far (a connection that ended too soon counts as one).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// Where it goes.
        server: ServerUrl,
        /// Why it is needed, and why the delay is what it is.
        reason: ReconnectReason,
    },
    /// An established connection ended.
    ConnectionLost {
        /// The server.
        server: ServerUrl,
        /// Why.
        reason: ConnectionLoss,
    },
    /// The server closed the connection with DISCONNECT.
    ServerDisconnected {
        /// The server.
        server: ServerUrl,
        /// Its reason code.
        reason: ReasonCode,
        /// Its Reason String.
        reason_string: Option<String>,
        /// Another server to use, if it named one.
        server_reference: Option<String>,
    },
    /// The session expired while the client was away; the server no longer has it.
    SessionExpired,
    /// A subscription the session keeps (made again after the server lost the session) or a
    /// SUBSCRIBE/UNSUBSCRIBE in doubt from before a restart could not be sent on this
    /// connection: it does not fit the server's Maximum Packet Size (smaller than when it was
    /// made). Its record stays, and the next connection tries again; until one can, the
    /// server's session lacks it.
    SubscriptionChangeNotSent {
        /// Its Topic Filters.
        filters: Vec<String>,
        /// Why it cannot be encoded.
        error: crate::packet::EncodeError,
    },
    /// The server had no session although the client had one. What the client did:
    /// publishes that may have reached the lost session are sent again as new messages or
    /// discarded ([`ClientBuilder::lost_session`](super::ClientBuilder::lost_session)), released
    /// QoS 2 flows are taken as delivered, inbound markers are dropped, and subscriptions are
    /// made again.
    SessionLost {
        /// Publishes sent again.
        resent: usize,
        /// Publishes discarded (each also reported by `MessageDiscarded`).
        discarded: usize,
        /// PUBREL flows dropped.
        dropped_pubrel: usize,
        /// Inbound PUBREC markers dropped.
        dropped_inbound: usize,
        /// Subscriptions made again.
        resubscribed: usize,
    },
    /// The store holds a session of this client id, under a server no longer configured, with
    /// messages in it (a broker's address changed?). They wait there until the session is
    /// moved ([`move_session`](crate::store::move_session), to the key of
    /// [`ServerUrl::session_key`]) or dropped ([`SessionStore::clear`](crate::store::SessionStore::clear)),
    /// with no client running on it. Reported once at start.
    StrandedSession {
        /// The session's key in the store.
        session: SessionKey,
        /// Publishes in flight with that server.
        in_flight: usize,
        /// Publishes in its offline queue.
        queued: u64,
    },
    /// A queued message's Message Expiry Interval ran out before it could be sent: it was
    /// dropped from the store, never sent, and its delivery resolved
    /// [`DeliveryError::Expired`](super::DeliveryError::Expired).
    MessageExpired {
        /// Its topic.
        topic: String,
    },
    /// The queue was full and its policy drops the oldest: this message was dropped from the
    /// store unsent, and its delivery resolved
    /// [`DeliveryError::Dropped`](super::DeliveryError::Dropped).
    MessageDropped {
        /// Its topic.
        topic: String,
    },
    /// A newer value of a latest-value topic was published before this one could be sent
    /// (`ClientBuilder::latest_value_topics`): it was dropped from the store unsent, and its
    /// delivery resolved [`DeliveryError::Replaced`](super::DeliveryError::Replaced).
    MessageReplaced {
        /// Its topic.
        topic: String,
    },
    /// A publish that may have reached a session the server lost was discarded
    /// (`LostSession::Discard`): never sent again, its delivery resolved
    /// [`DeliveryError::SessionLost`](super::DeliveryError::SessionLost).
    MessageDiscarded {
        /// Its topic.
        topic: String,
    },
    /// The store would not open because it was damaged: it was moved aside (kept, never
    /// deleted) and the client runs on a fresh one. The session it held, and its messages, are
    /// in the moved file. Reported once at start (`ClientBuilder::store_set_aside`).
    StoreSetAside {
        /// Where the store is, fresh.
        path: std::path::PathBuf,
        /// Where the damaged one was moved.
        moved_to: std::path::PathBuf,
        /// Why it would not open.
        cause: String,
    },
    /// The application did not handle a message (dropped it unacked with manual ack,
    /// released it, or dropped it while its thread panicked): it is handed over again after
    /// `retry_in` ([`Redelivery`](super::Redelivery)).
    MessageReleased {
        /// Its topic.
        topic: String,
        /// How many times it was handed over so far.
        deliveries: u32,
        /// When it comes again.
        retry_in: Duration,
    },
    /// A message was not handled in its last delivery
    /// ([`Redelivery::max_deliveries`](super::Redelivery::max_deliveries)): the policy's
    /// `outcome` settled it (refused, sent to the dead-letter topic, or discarded).
    MessageExhausted {
        /// Its topic.
        topic: String,
        /// How many times it was handed over.
        deliveries: u32,
        /// What became of it.
        outcome: super::policy::Exhausted,
    },
    /// The application dropped its [`Messages`](super::Messages): messages that arrive from
    /// now on stay unacknowledged (counted in [`Stats::unread`]), so the server stops at the
    /// client's Receive Maximum and sends them again when the session resumes. Reported once.
    InboxClosed,
    /// Another process took the session over (a store shared by machines, such as
    /// PostgreSQL, fenced this one): the client stops, and must not be started again on this
    /// session while the other process owns it. [`ClientEvent::Stopped`] follows.
    SessionTakenOver {
        /// The session.
        session: String,
        /// The process that owns it now, as it named itself.
        holder: String,
    },
    /// The client stopped, and released its store.
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// The system clock stepped by `shift_ms` (NTP set it, say): the client's clock followed,
    /// and the sessions moved what they had stamped before the step with it, so that nothing
    /// expires at once and nothing outlives its deadline.
    ClockStepped {
        /// The step, in milliseconds (negative: back).
        shift_ms: i64,
    },
    /// This receiver fell behind and missed `count` events that are not critical
    /// ([`ClientEvent::is_critical`]): it keeps the newest ones (see [`Events`](super::Events)).
    EventsMissed {
        /// How many.
        count: u64,
    },
}

impl ClientEvent {
    /// Whether a receiver never misses it, however slowly it reads: the events that decide what
    /// an application does. `Connected`, `SessionLost`, `SessionExpired`, `SessionTakenOver`,
    /// `Stopped`, `StoreSetAside`, `StrandedSession` and `InboxClosed`; the others (attempts,
    /// losses, messages released, expired or dropped) may be dropped for a receiver more than
    /// 256 behind, which then gets `EventsMissed`.
    pub fn is_critical(&self) -> bool {
        matches!(
            self,
            Self::Connected { .. }
                | Self::SessionLost { .. }
                | Self::SessionExpired
                | Self::SessionTakenOver { .. }
                | Self::Stopped { .. }
                | Self::StoreSetAside { .. }
                | Self::StrandedSession { .. }
                | Self::InboxClosed
        )
    }
}

/// Why the client is about to connect again ([`ClientEvent::Reconnecting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconnectReason {
    /// An attempt failed (`ClientEvent::ConnectFailed` said why).
    AttemptFailed,
    /// An established connection was lost (`ClientEvent::ConnectionLost` said why).
    ConnectionLost,
    /// The connection ended `lasted` after CONNACK, before it had stayed up for
    /// [`Backoff::stable_after`](super::Backoff::stable_after): it counts as a failed
    /// attempt, so the delay keeps growing (two gateways with one client identifier, an
    /// authorization the server withdraws after CONNACK).
    ShortLived {
        /// How long it stayed up.
        lasted: Duration,
    },
    /// The client ended a working connection itself, because the credential it was made with
    /// expires soon ([`ClientBuilder::credential_provider`](super::ClientBuilder::credential_provider)): a
    /// planned reconnection, at once, with a fresh credential.
    CredentialExpiring,
}

/// Counters of one client, read with [`Client::stats`](super::Client::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// QoS 1/2 publishes sent and not yet acknowledged.
    pub outbound_in_flight: u64,
    /// Publishes waiting in the durable queue (and publishers waiting for room in it).
    pub queued: u64,
    /// QoS 1/2 messages delivered to the application and not yet acked or refused (those
    /// waiting to be handed over again included).
    pub inbound_unacked: u64,
    /// Manual-ack messages the application dropped without `ack`, `reject` or `release`
    /// (each is handed over again, see [`Redelivery`](super::Redelivery)).
    pub dropped_unacked: u64,
    /// Messages the application did not handle (dropped unacked, released, dropped in a
    /// panic): each is handed over again or, after its last delivery, exhausted.
    pub released: u64,
    /// Messages handed over again after they were released.
    pub redelivered: u64,
    /// Messages forwarded (`Message::forward`): acked in the commit that stored their copy.
    pub forwarded: u64,
    /// Messages settled by the redelivery policy after their last delivery (refused, sent to
    /// the dead-letter topic or discarded).
    pub exhausted: u64,
    /// Messages left unacknowledged because nobody reads them (the application dropped its
    /// `Messages`, or a message it never read): the server sends them again.
    pub unread: u64,
    /// Messages received beyond the client's Receive Maximum (a server over its quota), waiting
    /// for acks before they are delivered (manual ack).
    pub inbound_held: u64,
    /// How many messages ever arrived beyond the client's Receive Maximum.
    pub inbound_over_receive_maximum: u64,
    /// Copies of QoS 1 messages the application handled (or held) already, recognised by
    /// their idempotency key, acknowledged and not handed over
    /// ([`ClientBuilder::deduplicate`](super::ClientBuilder::deduplicate)).
    pub duplicates_dropped: u64,
    /// Idempotency keys of handled messages kept in the store.
    pub seen_keys: u64,
    /// Publishes accepted.
    pub published: u64,
    /// Publishes whose callers gave up before they were accepted (the future was dropped):
    /// never sent.
    pub withdrawn: u64,
    /// Queued publishes dropped because their Message Expiry Interval ran out.
    pub expired: u64,
    /// Queued publishes dropped to make room (`QueuePolicy::DropOldest`).
    pub dropped_oldest: u64,
    /// Queued publishes of latest-value topics replaced, unsent, by newer values.
    pub replaced: u64,
    /// Publishes discarded because they may have reached a session the server lost
    /// (`LostSession::Discard`).
    pub discarded: u64,
    /// Bytes the queued publishes take in the store.
    pub queued_bytes: u64,
    /// How long the oldest publish waiting to be sent has waited, in milliseconds (0 when
    /// none waits): the age of the backlog.
    pub oldest_queued_age_ms: u64,
    /// Messages received.
    pub received: u64,
    /// Store commits.
    pub commits: u64,
    /// Store operations in those commits.
    pub committed_ops: u64,
    /// Publishes accepted by those commits (their average is the group-commit batch size).
    pub committed_publishes: u64,
    /// Successful connections.
    pub connections: u64,
    /// TLS handshakes completed (connections over `mqtts://`, `wss://` and `quic://`; quinn
    /// does not say whether a QUIC handshake resumed, so those count as full).
    pub tls_handshakes: u64,
    /// Those of them that resumed the TLS session of an earlier connection (a session
    /// ticket) instead of a full handshake: a reconnection costs the server less.
    pub tls_resumed: u64,
    /// Requests ([`Client::request`](super::Client::request)) waiting for their response.
    pub responses_awaited: u64,
    /// Re-authentications on a live connection with a fresh credential from the credential
    /// provider, before the last one expired (enhanced authentication; AUTH 0x19).
    pub reauthentications: u64,
}

impl Stats {
    /// Publishes per commit: how well group commit batches.
    pub fn average_batch(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.committed_publishes as f64 / self.commits as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub(crate) outbound_in_flight: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) inbound_unacked: AtomicU64,
    pub(crate) dropped_unacked: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    pub(crate) unread: AtomicU64,
    pub(crate) inbound_held: AtomicU64,
    pub(crate) inbound_over_receive_maximum: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    pub(crate) seen_keys: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) withdrawn: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) dropped_oldest: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    pub(crate) oldest_queued_age_ms: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) committed_ops: AtomicU64,
    pub(crate) committed_publishes: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_resumed: AtomicU64,
    pub(crate) responses_awaited: AtomicU64,
    pub(crate) reauthentications: AtomicU64,
}

impl StatsCell {
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            outbound_in_flight: get(&self.outbound_in_flight),
            queued: get(&self.queued),
            inbound_unacked: get(&self.inbound_unacked),
            dropped_unacked: get(&self.dropped_unacked),
            released: get(&self.released),
            redelivered: get(&self.redelivered),
            forwarded: get(&self.forwarded),
            exhausted: get(&self.exhausted),
            unread: get(&self.unread),
            inbound_held: get(&self.inbound_held),
            inbound_over_receive_maximum: get(&self.inbound_over_receive_maximum),
            duplicates_dropped: get(&self.duplicates_dropped),
            seen_keys: get(&self.seen_keys),
            published: get(&self.published),
            withdrawn: get(&self.withdrawn),
            expired: get(&self.expired),
            dropped_oldest: get(&self.dropped_oldest),
            replaced: get(&self.replaced),
            discarded: get(&self.discarded),
            queued_bytes: get(&self.queued_bytes),
            oldest_queued_age_ms: get(&self.oldest_queued_age_ms),
            received: get(&self.received),
            commits: get(&self.commits),
            committed_ops: get(&self.committed_ops),
            committed_publishes: get(&self.committed_publishes),
            connections: get(&self.connections),
            tls_handshakes: get(&self.tls_handshakes),
            tls_resumed: get(&self.tls_resumed),
            responses_awaited: get(&self.responses_awaited),
            reauthentications: get(&self.reauthentications),
        }
    }
}
