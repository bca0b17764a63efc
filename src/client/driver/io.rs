//! Reading from and writing to the connection: decoding what arrived into the session,
//! encoding what the session sends, and writing without waiting where the socket allows.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::warn;

use super::super::clock;
use std::sync::Arc;

use super::super::error::ConnectionLoss;
use super::super::transport::{Exchanged, Link, Outgoing};
use super::Driver;
use super::connection::Close;
use super::ownership::lapsed_for;
use crate::packet::{Decoded, Packet};
use crate::session::ProtocolViolation;

/// What [`exchange`] did.
pub(super) enum Exchange {
    /// The link read, wrote everything or failed.
    Done(std::io::Result<Exchanged>),
    /// The store's lease on the session ran out: nothing was written.
    LeaseLapsed,
}

/// Reads and writes on the link if there is one (see [`Link::poll_exchange`]); otherwise never
/// resolves. `lapsed` is asked at every poll, right before the link writes: a process frozen
/// while bytes waited here, and woken past its lease, must not write them (ownership.rs).
pub(super) async fn exchange(
    link: &mut Option<Link>,
    buf: &mut BytesMut,
    out: &mut Outgoing,
    progress: &mut Instant,
    reading: bool,
    lapsed: impl Fn() -> bool,
) -> Exchange {
    let Some(link) = link else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        if lapsed() {
            return Poll::Ready(Exchange::LeaseLapsed);
        }
        link.poll_exchange(cx, buf, out, reading, progress)
            .map(Exchange::Done)
    })
    .await
}

impl Driver {
    pub(super) async fn on_exchanged(&mut self, result: std::io::Result<Exchanged>) {
        match result {
            Ok(Exchanged::Read(0)) => self.lost(ConnectionLoss::ServerClosed, Close::Abrupt).await,
            Ok(Exchanged::Read(_)) => self.decode_all().await,
            // Everything is out: a disconnect waiting for it can close now (next turn).
            Ok(Exchanged::Written) => {}
            Err(e) => {
                self.lost(ConnectionLoss::Io(Arc::new(e)), Close::Abrupt)
                    .await
            }
        }
    }

    async fn decode_all(&mut self) {
        if self.held_back() {
            // Nothing read reaches the application: another process may own the session.
            self.conn.rbuf.clear();
            return;
        }
        let generation = self.conn.link_gen;
        while self.conn.link.is_some() && self.conn.link_gen == generation {
            let Some(slot) = self.slots.get_mut(self.active) else {
                return;
            };
            let codec = slot.session.codec();
            match codec.decode(&mut self.conn.rbuf) {
                Ok(Decoded::Incomplete { .. }) => return,
                Ok(Decoded::Packet(packet)) => {
                    self.metrics.receiving(&packet);
                    let handled = slot.session.handle_incoming(packet, clock::now());
                    self.process_events().await;
                    if let Err(violation) = handled {
                        if violation == ProtocolViolation::SessionWithoutState {
                            return self.start_clean(violation).await;
                        }
                        self.violation(violation.into()).await;
                        return;
                    }
                }
                Err(error) => {
                    self.violation(error.into()).await;
                    return;
                }
            }
        }
    }

    /// Encodes packets onto what waits to be written, taking them out of `packets` (which
    /// keeps its memory for the caller to reuse); the loop writes it while it reads.
    pub(super) fn write(&mut self, packets: &mut Vec<Packet>) {
        self.encode_out(packets);
        packets.clear();
    }

    fn encode_out(&mut self, packets: &[Packet]) {
        if packets.is_empty() || self.conn.link.is_none() || self.held_back() {
            return;
        }
        let Some(codec) = self.slots.get(self.active).map(|s| s.session.codec()) else {
            return;
        };
        if !self.conn.out.is_pending() {
            // The write timeout counts from when bytes begin to wait.
            self.conn.write_progress = clock::now();
        }
        self.metrics.sending(packets);
        for packet in packets {
            if let Err(error) = codec.encode(packet, &mut self.conn.out.bytes) {
                // The engine checks sizes before it emits a packet; this is a bug, not input.
                warn!(%error, packet = ?packet.packet_type(), "packet not encodable; skipped");
            }
        }
        self.write_now();
    }

    /// Writes what the socket takes at once, without waiting: most writes complete here, and
    /// the loop is not woken again just to learn that they did. What is left (and an error)
    /// the loop's `exchange` meets on its next turn.
    fn write_now(&mut self) {
        let conn = &mut self.conn;
        let key = self.slots.get(self.active).map(|slot| &slot.key);
        let attempt = std::pin::pin!(exchange(
            &mut conn.link,
            &mut conn.rbuf,
            &mut conn.out,
            &mut conn.write_progress,
            false,
            lapsed_for(&*self.store, key),
        ));
        let polled = attempt.poll(&mut Context::from_waker(Waker::noop()));
        if matches!(polled, Poll::Ready(Exchange::LeaseLapsed)) {
            self.lease_lapsed = true;
        }
    }

    /// Writes out what waits, for at most `within` (before a graceful close or a stop, both of
    /// which skip it once the store's lease on the session lapsed).
    pub(super) async fn flush_out(&mut self, within: Duration) {
        let Some(link) = self.conn.link.as_mut() else {
            return;
        };
        if self.conn.out.is_pending() {
            let bytes = self.conn.out.bytes.split().freeze();
            let _ = tokio::time::timeout(within, link.write(bytes)).await;
        }
        self.conn.out.clear();
    }
}
