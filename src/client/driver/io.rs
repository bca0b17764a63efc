//! Reading from and writing to the connection: decoding what arrived into the session,
//! encoding what the session sends, and writing without waiting where the socket allows.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::super::clock;
use std::sync::Arc;

use super::super::error::ConnectionLoss;
use super::super::transport::Exchanged;
use super::Driver;
use super::connection::Close;
use super::ownership::lapsed_for;
use super::wire::Exchange;
use crate::packet::{Decoded, Packet};
use crate::session::ProtocolViolation;

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
            self.wire.forget_read();
            return;
        }
        let generation = self.wire.generation();
        while self.wire.is_open() && self.wire.generation() == generation {
            let Some(slot) = self.slots.get_mut(self.active) else {
                return;
            };
            let codec = slot.session.codec();
            match self.wire.decode(&codec) {
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
        if packets.is_empty() || !self.wire.is_open() || self.held_back() {
            return;
        }
        let Some(codec) = self.slots.get(self.active).map(|s| s.session.codec()) else {
            return;
        };
        self.metrics.sending(packets);
        self.wire.encode(&codec, packets);
        self.write_now();
    }

    /// Writes what the socket takes at once, without waiting: most writes complete here, and
    /// the loop is not woken again just to learn that they did. What is left (and an error)
    /// the loop's `exchange` meets on its next turn.
    fn write_now(&mut self) {
        let key = self.slots.get(self.active).map(|slot| &slot.key);
        let attempt = std::pin::pin!(self.wire.exchange(false, lapsed_for(&*self.store, key)));
        let polled = attempt.poll(&mut Context::from_waker(Waker::noop()));
        if matches!(polled, Poll::Ready(Exchange::LeaseLapsed)) {
            self.lease_lapsed = true;
        }
    }

    /// Writes out what waits, for at most `within` (before a graceful close or a stop, both of
    /// which skip it once the store's lease on the session lapsed).
    pub(super) async fn flush_out(&mut self, within: Duration) {
        self.wire.flush(within).await;
    }
}
