//! What a session knows about itself: its metadata and its clock.

use crate::packet::ProtocolVersion;

/// What a session knows about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionMeta {
    /// The Session Expiry Interval in force, in seconds; `0xFFFF_FFFF` never expires.
    pub session_expiry_interval: u32,
    /// When the last connection ended, in milliseconds since the UNIX epoch; `None` while a
    /// connection is up or before the first one.
    pub disconnected_at_ms: Option<u64>,
    /// The client identifier the server assigned, when the client sent none.
    pub assigned_client_id: Option<String>,
    /// While a connection is up: a time (milliseconds since the UNIX epoch) by which the
    /// server will have noticed the connection gone if the process dies now, without a word
    /// (SIGKILL, power loss). The session therefore expires on the server no earlier than
    /// this plus the expiry interval; the engine moves it forward while the process lives.
    pub alive_until_ms: Option<u64>,
    /// The protocol the session speaks: a session is never resumed with the other one.
    pub protocol: ProtocolVersion,
    /// The most QoS 1/2 publishes the last connection allowed in flight (the server's Receive
    /// Maximum within the client's own window): after a restart, at most this many of the
    /// oldest queued messages can have been sent before it. `None` in records written before
    /// it was kept.
    pub in_flight_limit: Option<u16>,
    /// The session's clock: what keeps its deadlines right when the system clock is wrong at
    /// start (a gateway without a real-time clock boots in 1970) and steps later.
    pub clock: SessionClock,
}

/// The session's clock, as the session keeps it: the times it stores (Message Expiry
/// deadlines, when the session ended) are in one frame, which a restart never starts before
/// the last time stamped, and which follows a step of the system clock by correcting what
/// was stamped before it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionClock {
    /// The session's time when last stamped (milliseconds since the UNIX epoch, at most a
    /// minute old while the client runs): a client that starts with its system clock before
    /// it takes this as now instead.
    pub stamped_ms: Option<u64>,
    /// The first sequence number stamped while the clock was not known to be right (the
    /// system clock was behind `stamped_ms` at a start): a step corrects everything from it.
    pub untrusted_since: Option<u64>,
    /// Steps not yet applied to queued records: a record under a sequence number in a range
    /// carries times from before the step, and is corrected as it is read.
    pub corrections: Vec<ClockCorrection>,
}

/// A step of the session's clock, for the queued records stamped before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockCorrection {
    /// The first sequence number it applies to.
    pub from_seq: u64,
    /// The first sequence number past it.
    pub to_seq: u64,
    /// What to add to their times, in milliseconds.
    pub shift_ms: i64,
}

impl ClockCorrection {
    /// `ms` as the session's clock sees it now, for a record stored under `seq`.
    pub fn apply(corrections: &[Self], seq: u64, ms: u64) -> u64 {
        corrections
            .iter()
            .filter(|c| (c.from_seq..c.to_seq).contains(&seq))
            .fold(ms, |ms, c| ms.saturating_add_signed(c.shift_ms))
    }
}

impl SessionMeta {
    /// The latest time the session saw (milliseconds since the UNIX epoch): its clock's last
    /// stamp, or when its last connection ended.
    pub fn clock_floor_ms(&self) -> Option<u64> {
        self.clock.stamped_ms.max(self.disconnected_at_ms)
    }

    /// Whether the session has expired at `now_ms` (milliseconds since the UNIX epoch): its
    /// connection ended and the expiry interval has passed since.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms().is_some_and(|at| now_ms >= at)
    }

    /// When the session expires (milliseconds since the UNIX epoch): `None` when it never
    /// does, or when its end is unknown.
    pub fn expires_at_ms(&self) -> Option<u64> {
        if self.session_expiry_interval == u32::MAX {
            return None;
        }
        let lifetime = u64::from(self.session_expiry_interval) * 1000;
        // A connection that ended cleanly says when; one the process never saw end (a kill
        // while connected) ended before `alive_until_ms` at the latest. Without either, the
        // session's end is unknown and it is kept.
        self.disconnected_at_ms
            .or(self.alive_until_ms)
            .map(|ended| ended.saturating_add(lifetime))
    }
}
