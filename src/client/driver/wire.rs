//! The link and its bytes: what arrived and waits to be decoded, what waits to be written, and
//! which link they belong to.

use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::warn;

use super::super::clock;
use super::super::outgoing::SHARED_PAYLOAD_FROM;
use super::super::transport::{Exchanged, Link, Outgoing};
use crate::packet::{Codec, DecodeError, Decoded, Packet};

/// What [`Wire::exchange`] did.
pub(super) enum Exchange {
    /// The link read, wrote everything or failed.
    Done(std::io::Result<Exchanged>),
    /// The store's lease on the session ran out: nothing was written.
    LeaseLapsed,
}

/// The link and its bytes: what arrived and waits to be decoded, what waits to be written,
/// and which link they belong to. Only this file touches them; the rest of the driver asks.
pub(super) struct Wire {
    link: Option<Link>,
    /// Counts links; packets polled for one never reach another.
    generation: u64,
    rbuf: BytesMut,
    /// What waits to be written on the link, written while reading goes on.
    out: Outgoing,
    /// When bytes last moved out, or when some began to wait: a write timeout counts from it.
    write_progress: Instant,
}

impl Wire {
    pub(super) fn new() -> Self {
        Self {
            link: None,
            generation: 0,
            rbuf: BytesMut::with_capacity(8 * 1024),
            out: Outgoing::default(),
            write_progress: clock::now(),
        }
    }

    /// Whether a link is open.
    pub(super) fn is_open(&self) -> bool {
        self.link.is_some()
    }

    /// Which link this is: it changes with every link attached or taken away.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether bytes wait to be written.
    pub(super) fn writing(&self) -> bool {
        self.out.is_pending()
    }

    /// Whether at least `high_water` bytes wait to be written.
    pub(super) fn backed_up(&self, high_water: usize) -> bool {
        self.out.len() >= high_water
    }

    /// A new link, with nothing read or waiting yet.
    pub(super) fn attach(&mut self, link: Link) {
        self.link = Some(link);
        self.generation += 1;
        self.rbuf.clear();
        self.out.clear();
    }

    /// Takes the link away: what waited to be written is dropped, what was read forgotten.
    pub(super) fn detach(&mut self) -> Option<Link> {
        self.out.clear();
        self.generation += 1;
        self.rbuf.clear();
        self.link.take()
    }

    /// The next packet of what was read, if it is whole.
    pub(super) fn decode(&mut self, codec: &Codec) -> Result<Decoded, DecodeError> {
        codec.decode(&mut self.rbuf)
    }

    /// Forgets what was read and not decoded.
    pub(super) fn forget_read(&mut self) {
        self.rbuf.clear();
    }

    /// When a write that makes no progress ends the connection, if something waits to go out.
    pub(super) fn write_deadline(&self, write_timeout: Duration) -> Option<Instant> {
        (self.link.is_some() && self.out.is_pending()).then(|| self.write_progress + write_timeout)
    }

    /// Reads and writes on the link if there is one (see [`Link::poll_exchange`]); otherwise
    /// never resolves. `lapsed` is asked at every poll, right before the link writes: a
    /// process frozen while bytes waited here, and woken past its lease, must not write them
    /// (ownership.rs).
    pub(super) async fn exchange(&mut self, reading: bool, lapsed: impl Fn() -> bool) -> Exchange {
        let Some(link) = self.link.as_mut() else {
            return std::future::pending().await;
        };
        let (buf, out, progress) = (&mut self.rbuf, &mut self.out, &mut self.write_progress);
        std::future::poll_fn(|cx| {
            if lapsed() {
                return Poll::Ready(Exchange::LeaseLapsed);
            }
            link.poll_exchange(cx, buf, out, reading, progress)
                .map(Exchange::Done)
        })
        .await
    }

    /// Encodes `packets` onto what waits to be written. A large PUBLISH payload is not
    /// copied: it waits as the application's `Bytes`, behind its packet's head.
    pub(super) fn encode(&mut self, codec: &Codec, packets: &[Packet]) {
        if !self.out.is_pending() {
            // The write timeout counts from when bytes begin to wait.
            self.write_progress = clock::now();
        }
        for packet in packets {
            let encoded = match packet {
                Packet::Publish(publish) if publish.payload.len() >= SHARED_PAYLOAD_FROM => codec
                    .encode_publish_head(publish, self.out.buf())
                    .map(|_| self.out.push_shared(publish.payload.clone())),
                _ => codec.encode(packet, self.out.buf()).map(drop),
            };
            if let Err(error) = encoded {
                // The engine checks sizes before it emits a packet; this is a bug, not input.
                warn!(%error, packet = ?packet.packet_type(), "packet not encodable; skipped");
            }
        }
    }

    /// Writes out what waits, for at most `within`, and drops what is left.
    pub(super) async fn flush(&mut self, within: Duration) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if self.out.is_pending() {
            let bytes = self.out.take_all();
            let _ = tokio::time::timeout(within, link.write(bytes)).await;
        }
        self.out.clear();
    }
}
