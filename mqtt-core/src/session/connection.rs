//! The connection's life: CONNACK, keep alive, DISCONNECT both ways, connection loss, and
//! what happens to the session when the server no longer has it.

use std::time::{Duration, Instant};

use super::aliases::OutAliases;
use bytes::Bytes;

use super::{
    ConnectPacketError, Connection, DEFAULT_V311_IN_FLIGHT, Event, ProtocolViolation, RequestError,
    RequestId, Session,
};
use crate::packet::{
    ConnAck, Disconnect, Packet, PacketType, ProtocolVersion, QoS, ReasonCode, UserProperty,
};
use crate::store::{SessionMeta, StoreOp};

/// What each connection attempt may set anew in CONNECT: a `before_connect` hook refreshes
/// credentials and User Properties per attempt.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectCredentials {
    /// The user name, if any.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<Bytes>,
    /// CONNECT's User Properties.
    pub user_properties: Vec<UserProperty>,
}

crate::secret::debug_hiding_secrets!(ConnectCredentials {
    username,
    user_properties
} hidden { password });

impl Session {
    /// The credentials and User Properties CONNECT carries unless an attempt replaces them.
    pub fn connect_credentials(&self) -> ConnectCredentials {
        ConnectCredentials {
            username: self.options.username.clone(),
            password: self.options.password.clone(),
            user_properties: self.options.properties.user_properties.clone(),
        }
    }

    /// A new connection is open: CONNECT, with `credentials`, goes out with the next
    /// [`Output`](super::Output), before any other packet; then feed the server's packets to
    /// [`Session::handle_incoming`]. Starts the authenticator, if there is one. Packets not yet
    /// polled for an earlier connection are dropped, and the server's Maximum Packet Size is
    /// forgotten until its CONNACK.
    pub fn start_connection(
        &mut self,
        credentials: ConnectCredentials,
    ) -> Result<(), ConnectPacketError> {
        let mut connect = self.connect_packet()?;
        connect.username = credentials.username;
        connect.password = credentials.password;
        connect.properties.user_properties = credentials.user_properties;
        let packet = Packet::Connect(Box::new(connect));
        // Nothing limits CONNECT but the specification until the server has answered.
        self.codec.max_outgoing_packet_size = None;
        self.codec.encoded_len(&packet)?;
        self.out.pending.send.clear();
        self.out.pending.send.push(packet);
        Ok(())
    }

    /// Handles CONNACK for the connection being made.
    pub fn handle_connack(
        &mut self,
        connack: &ConnAck,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        // A 3.1.1 CONNACK has no properties: whatever the struct holds is not the server's.
        let stripped;
        let connack = if self.options.protocol == ProtocolVersion::V311 {
            stripped = ConnAck {
                properties: Default::default(),
                ..connack.clone()
            };
            &stripped
        } else {
            connack
        };
        if connack.reason_code.is_error() {
            self.events.push_back(Event::ConnectionRefused {
                reason: connack.reason_code,
                server_reference: connack.properties.server_reference.clone(),
            });
            return Ok(());
        }
        if self.auth.method.is_some() {
            let props = &connack.properties;
            let data = props.authentication_data.clone();
            self.authenticator_for(props.authentication_method.as_deref())?
                .success(data.as_ref())
                .map_err(ProtocolViolation::AuthFailed)?;
        } else if connack.properties.authentication_method.is_some() {
            return Err(ProtocolViolation::UnexpectedAuth);
        }
        // Session Present 1 is wrong after Clean Start 1, and dangerous without local state:
        // the server may hold packet identifiers this client would reuse [MQTT-3.2.2-4].
        if connack.session_present {
            if self.clean_flag() {
                return Err(ProtocolViolation::UnexpectedSession);
            }
            if !self.local_state {
                self.start_clean = true;
                return Err(ProtocolViolation::SessionWithoutState);
            }
        }
        let props = &connack.properties;
        // The server's Receive Maximum (none in 3.1.1), within the client's own window.
        let own_window = self
            .options
            .in_flight_maximum
            .unwrap_or(match self.options.protocol {
                ProtocolVersion::V311 => DEFAULT_V311_IN_FLIGHT,
                _ => u16::MAX,
            });
        let window = props
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(own_window)
            .max(1);
        self.connection = Some(Connection {
            send_quota: window,
            receive_maximum: window,
            first_pass: true,
            maximum_qos: props.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: props.retain_available.unwrap_or(true),
            wildcards_available: props.wildcard_subscription_available.unwrap_or(true),
            subscription_ids_available: props.subscription_identifiers_available.unwrap_or(true),
            shared_available: props.shared_subscription_available.unwrap_or(true),
            // The server's keep alive replaces the client's [MQTT-3.2.2-21].
            keep_alive: Duration::from_secs(u64::from(
                props.server_keep_alive.unwrap_or(self.options.keep_alive),
            )),
            last_sent: now,
            ping_sent: None,
            aliases: OutAliases::with_maximum(if self.options.topic_aliases {
                props.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            }),
            closing: false,
        });
        // The metadata the session keeps: the expiry in force (the server's, if it set one),
        // the identifier it assigned, and that a connection is up.
        let meta = SessionMeta {
            session_expiry_interval: props
                .session_expiry_interval
                .unwrap_or_else(|| super::kept_expiry(&self.options)),
            disconnected_at_ms: None,
            assigned_client_id: props
                .assigned_client_identifier
                .clone()
                .or_else(|| self.meta.assigned_client_id.clone()),
            // Unknown until the first stamp (`note_alive`): a kill before it keeps the
            // session locally rather than guess when the server noticed.
            alive_until_ms: None,
            protocol: self.options.protocol,
            in_flight_limit: Some(window),
            clock: self.meta.clock.clone(),
        };
        // The limit of the connection before: how many queued messages it may have sent.
        let earlier_limit = self.meta.in_flight_limit;
        self.set_meta(meta);
        self.clock.alive_stamped_ms = None;
        self.codec.max_outgoing_packet_size = props.maximum_packet_size;
        self.connected_once = true;
        self.local_state = true;
        self.start_clean = false;
        self.retire_acks();
        self.inbound.aliases.clear();
        for flow in self.outbound.flows.values_mut() {
            flow.sent = false;
            flow.holds_quota = false;
        }
        self.outbound.unsent_from = Some(0);
        if !connack.session_present {
            self.session_lost(earlier_limit);
        }
        // Before anything else goes out: requests wait for identifiers only, and `drain`
        // sends them first.
        let resubscribed = if self.options.resubscribe
            && (!connack.session_present || self.requests.resubscribe_needed)
        {
            self.restore_subscriptions()
        } else {
            0
        };
        self.settle_in_doubt(connack.session_present);
        self.events.push_back(Event::Connected {
            session_present: connack.session_present,
            properties: Box::new(connack.properties.clone()),
            resubscribed,
        });
        self.drain();
        Ok(())
    }

    /// The server has no session: drop PUBREL flows and inbound markers, send the publishes
    /// that may have reached it again as new messages or discard them
    /// ([`LostSession`](super::LostSession)), and say so. `earlier_limit` bounds how many queued
    /// messages the connection before a restart may have sent.
    pub(super) fn session_lost(&mut self, earlier_limit: Option<u16>) {
        let released: Vec<(u64, bool)> = self
            .outbound
            .flows
            .iter()
            .filter(|(_, f)| f.stage.is_released())
            .map(|(seq, f)| (*seq, f.reported))
            .collect();
        for &(seq, reported) in &released {
            // PUBREC had arrived: the server took the message (unless it was released only
            // to free its identifier, its failure reported already).
            self.end_flow(seq, |id| {
                (!reported).then_some(Event::Delivered {
                    id,
                    reason: ReasonCode::Success,
                })
            });
        }
        // The server forgot its messages too: a late ack must not write a marker that would
        // swallow a new message reusing the identifier.
        self.inbound.stale.clear();
        let dropped_inbound = self.inbound.markers.len();
        for packet_id in std::mem::take(&mut self.inbound.markers) {
            self.out
                .pending
                .commit
                .push(StoreOp::RemoveInbound { packet_id });
        }
        let discarded = match self.options.lost_session {
            super::LostSession::Republish => 0,
            super::LostSession::Discard => self.discard_possibly_sent(earlier_limit),
        };
        // After a restart, queued messages stored before it may have been in flight.
        let resumed_below = self.outbound.resumed_below;
        let resent = self.outbound.flows.len()
            + self
                .queues()
                .map(|q| q.resident_below(resumed_below) + q.stored_before_resume as usize)
                .sum::<usize>();
        if resent + discarded + released.len() + dropped_inbound > 0 {
            self.events.push_back(Event::SessionLost {
                resent,
                discarded,
                dropped_pubrel: released.len(),
                dropped_inbound,
            });
        }
        // The server has never seen them: they go out as first transmissions, DUP 0.
        for flow in self.outbound.flows.values_mut() {
            flow.retransmit = false;
        }
        self.outbound.resumed_below = 0;
        self.queue.stored_before_resume = 0;
        for lane in self.lanes.values_mut() {
            lane.stored_before_resume = 0;
        }
    }

    /// Discards the publishes that may have reached the session the server lost: every flow
    /// awaiting PUBACK or PUBREC and, after a restart, the oldest QoS 1/2 messages queued
    /// before it, as many as the connection before it allowed in flight (every one of them
    /// when that is not known). Those beyond the window in memory go as they are read back.
    /// Returns how many.
    fn discard_possibly_sent(&mut self, earlier_limit: Option<u16>) -> usize {
        let published: Vec<u64> = self
            .outbound
            .flows
            .iter()
            .filter(|(_, f)| !f.stage.is_released())
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &published {
            let topic = match self.outbound.flows.get(seq).map(|f| &f.stage) {
                Some(super::Stage::Published(p)) => p.topic.clone(),
                _ => String::new(),
            };
            self.end_flow(*seq, |id| Some(Event::Discarded { id, topic }));
        }
        let mut discarded = published.len();
        // Each class's queue went out oldest first: as many of each may have been in flight.
        for class in self.classes_by_rank() {
            discarded += self
                .with_queue(class, |s| s.discard_queued_possibly_sent(earlier_limit))
                .unwrap_or(0);
        }
        discarded
    }

    /// The part of [`Session::discard_possibly_sent`] of the queue in `self.queue`.
    fn discard_queued_possibly_sent(&mut self, earlier_limit: Option<u16>) -> usize {
        let mut budget = earlier_limit.map_or(u64::MAX, u64::from);
        let mut discarded = 0;
        for id in self
            .queue
            .resident_publishes_below(self.outbound.resumed_below)
        {
            if budget == 0 {
                break;
            }
            if let Some(publish) = self.queue.remove(id) {
                self.outbound.forget_deadline(id);
                self.release_latest_value(id, &publish.topic);
                let removal = self.queue_removal(id);
                self.out.pending.commit.push(removal);
                self.events.push_back(Event::Discarded {
                    id,
                    topic: publish.topic,
                });
                budget -= 1;
                discarded += 1;
            }
        }
        let later = budget.min(self.queue.stored_before_resume);
        if later > 0 {
            self.queue.discard_on_read = (later, self.outbound.resumed_below);
            discarded += later as usize;
        }
        discarded
    }

    /// The connection is gone: its quota goes with it; flows and the queue stay, to be sent
    /// again on the next connection. Store operations not yet polled are kept; packets are not.
    ///
    /// `now_ms` (milliseconds since the UNIX epoch) is stored as the moment the connection
    /// ended, from which the session's expiry counts. With a Session Expiry Interval of 0 the
    /// server ends the session now, and so does the client ([`Event::SessionExpired`]).
    pub fn connection_lost(&mut self, now_ms: u64) {
        if self.connection.take().is_none() {
            return;
        }
        self.out.pending.send.clear();
        self.out.pending.early.clear();
        self.retire_acks();
        let mut lost: Vec<(RequestId, Packet)> = Vec::new();
        for (packet_id, request) in std::mem::take(&mut self.requests.in_flight) {
            self.outbound.ids.remove(packet_id);
            lost.push((request.id, request.packet));
        }
        lost.extend(std::mem::take(&mut self.requests.waiting));
        // In order of the requests, so that a later one for a filter wins.
        lost.sort_by_key(|(id, _)| *id);
        for (id, packet) in lost {
            if self.requests.resubscribing.remove(&id) {
                // Unanswered: whether the server has it is unknown; make it again next time.
                self.requests.resubscribe_needed = true;
            } else if self.requests.settling.remove(&id) {
                // Still in doubt: sent again next time.
            } else {
                // Recorded, perhaps received: sent again first on the next connection, under
                // its own id, so that its caller gets the answer.
                self.requests.waiting.push_back((id, packet));
            }
        }
        let mut meta = self.meta.clone();
        meta.disconnected_at_ms = Some(now_ms);
        meta.alive_until_ms = None;
        self.set_meta(meta);
        self.clock.alive_stamped_ms = None;
        if self.meta.session_expiry_interval == 0 {
            self.events.push_back(Event::SessionExpired);
            self.session_lost(self.meta.in_flight_limit);
        }
        for flow in self.outbound.flows.values_mut() {
            flow.sent = false;
            flow.holds_quota = false;
        }
        self.outbound.unsent_from = Some(0);
    }

    /// How often a connected session moves its alive-until time forward; `None` when it need
    /// not (no connection, expiry 0 or never, keep alive off: then the server's detection of
    /// a dead connection has no bound to build on, and the session is kept locally).
    fn alive_interval(&self) -> Option<Duration> {
        let conn = self.connection.as_ref()?;
        let expiry = self.meta.session_expiry_interval;
        if expiry == 0 || expiry == u32::MAX || conn.keep_alive.is_zero() {
            return None;
        }
        Some(
            Duration::from_secs(u64::from(expiry / 8))
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
        )
    }

    /// Records, with the next [`Output`](super::Output), that the process is alive at `now_ms`
    /// (milliseconds since the UNIX epoch) when the last record is an interval old (an eighth
    /// of the Session Expiry Interval, between 1 and 60 seconds). A busy session's record rides
    /// on commits it makes anyway; an idle one costs one small commit per interval.
    ///
    /// The stored `alive_until_ms` is `now + 2 intervals + 1.5 × keep alive`: if the process
    /// dies before the next record, the server notices (keep alive) before that time, so the
    /// session expires on the server no earlier than it plus the expiry interval. A session
    /// restarted after a kill while connected is then known to be expired
    /// ([`Event::SessionExpired`]) once that has passed.
    pub fn note_alive(&mut self, now_ms: u64) {
        let Some(interval) = self.alive_interval() else {
            return;
        };
        let interval_ms = interval.as_millis() as u64;
        if self
            .clock
            .alive_stamped_ms
            .is_some_and(|last| now_ms < last.saturating_add(interval_ms))
        {
            return;
        }
        let keep_alive_ms = self
            .connection
            .as_ref()
            .map_or(0, |c| c.keep_alive.as_millis() as u64 * 3 / 2);
        let mut meta = self.meta.clone();
        meta.alive_until_ms = Some(
            now_ms
                .saturating_add(2 * interval_ms)
                .saturating_add(keep_alive_ms),
        );
        self.set_meta(meta);
        self.clock.alive_stamped_ms = Some(now_ms);
    }

    /// When [`Session::note_alive`] must next be called (milliseconds since the UNIX epoch).
    pub fn next_alive_ms(&self) -> Option<u64> {
        let interval = self.alive_interval()?.as_millis() as u64;
        Some(
            self.clock
                .alive_stamped_ms
                .map_or(0, |last| last.saturating_add(interval)),
        )
    }

    /// Whether a connection is up (CONNACK with Success received, not lost since).
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// When [`Session::handle_timeout`] must next be called: the keep alive deadline, or the
    /// PINGRESP deadline while a PINGREQ is outstanding. `None` without a connection or with keep
    /// alive off.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.connection.as_ref()?;
        if conn.keep_alive.is_zero() {
            return None;
        }
        Some(match conn.ping_sent {
            Some(sent) => sent + self.options.ping_timeout,
            None => conn.last_sent + conn.keep_alive,
        })
    }

    /// Sends PINGREQ when nothing was sent for the keep alive interval [MQTT-3.1.2-20]; reports
    /// [`Event::KeepAliveTimeout`] when PINGRESP does not come within the ping timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ping_timeout = self.options.ping_timeout;
        let Some(conn) = self.connection.as_mut() else {
            return;
        };
        if conn.keep_alive.is_zero() {
            return;
        }
        match conn.ping_sent {
            Some(sent) if now >= sent + ping_timeout => {
                self.events.push_back(Event::KeepAliveTimeout);
            }
            Some(_) => {}
            None if now >= conn.last_sent + conn.keep_alive => {
                conn.ping_sent = Some(now);
                self.out.pending.send.push(Packet::PingReq);
            }
            None => {}
        }
    }

    /// Sends DISCONNECT; the driver closes the connection after writing it and then calls
    /// [`Session::connection_lost`]. A new Session Expiry Interval is committed with it.
    pub fn disconnect(
        &mut self,
        reason: ReasonCode,
        session_expiry_interval: Option<u32>,
    ) -> Result<(), RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        if self.options.protocol == ProtocolVersion::V311
            && (reason != ReasonCode::Success || session_expiry_interval.is_some())
        {
            return Err(RequestError::NeedsV5(
                "a DISCONNECT reason code or Session Expiry Interval",
            ));
        }
        if let Some(interval) = session_expiry_interval
            && interval != 0
            && self.meta.session_expiry_interval == 0
        {
            return Err(RequestError::ExpiryExtended);
        }
        let mut packet = Disconnect::new(reason);
        packet.properties.session_expiry_interval = session_expiry_interval;
        self.codec
            .encoded_len(&Packet::Disconnect(packet.clone()))?;
        if let Some(interval) = session_expiry_interval {
            let mut meta = self.meta.clone();
            meta.session_expiry_interval = interval;
            self.set_meta(meta);
        }
        self.out.pending.send.push(Packet::Disconnect(packet));
        Ok(())
    }

    /// DISCONNECT from the server: reported, and the connection is over; the driver closes it
    /// and calls [`Session::connection_lost`].
    pub fn handle_disconnect(&mut self, packet: Disconnect) -> Result<(), ProtocolViolation> {
        if packet.properties.session_expiry_interval.is_some() {
            return Err(ProtocolViolation::ExpiryFromServer);
        }
        self.events.push_back(Event::ServerDisconnected {
            reason: packet.reason_code,
            reason_string: packet.properties.reason_string,
            server_reference: packet.properties.server_reference,
        });
        Ok(())
    }

    /// Ends the connection because of `reason` (a [`ProtocolViolation`]'s or a decode error's
    /// reason code): DISCONNECT goes out with the next [`Output`](super::Output), then the driver closes the
    /// connection and calls [`Session::connection_lost`].
    pub fn close_with(&mut self, reason: ReasonCode) {
        if let Some(disconnect) = self.violation_disconnect(reason) {
            self.out.pending.send.push(disconnect);
        }
    }

    /// The DISCONNECT that ends the connection because of `reason`, for a driver that writes it
    /// at once rather than behind a commit; `None` where there is none to send: no connection,
    /// a code DISCONNECT cannot carry, or MQTT 3.1.1, whose DISCONNECT is a normal end (the
    /// server would drop the Will), so the connection is just closed.
    pub fn violation_disconnect(&self, reason: ReasonCode) -> Option<Packet> {
        let sends = self.connection.is_some()
            && self.options.protocol != ProtocolVersion::V311
            && reason.is_valid_for(PacketType::Disconnect);
        sends.then(|| Packet::Disconnect(Disconnect::new(reason)))
    }
}
