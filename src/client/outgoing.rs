//! [`Outgoing`]: the bytes waiting to be written on a link. Small packets are encoded into one
//! buffer; a large PUBLISH payload waits as the application's own `Bytes`, written with a
//! vectored write rather than copied into the buffer.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this large are written from the application's `Bytes`; smaller ones are
/// copied into the buffer, which costs less than an extra slice in the write.
pub(crate) const SHARED_PAYLOAD_FROM: usize = 1024;

/// The most slices one vectored write is given.
const SLICES_PER_WRITE: usize = 64;

/// Bytes waiting to be written, and whether the stream still needs a flush.
#[derive(Default)]
pub(crate) struct Outgoing {
    /// Whole pieces waiting in front of `buf`, in order: encoded bytes split off it and
    /// payloads shared with the application.
    pieces: VecDeque<Bytes>,
    /// The bytes in `pieces`.
    in_pieces: usize,
    /// Encoded packets, after `pieces`.
    buf: BytesMut,
    /// Bytes were handed over and not yet flushed.
    pub(crate) unflushed: bool,
}

impl Outgoing {
    /// Whether anything is still on its way out.
    pub(crate) fn is_pending(&self) -> bool {
        !self.is_empty() || self.unflushed
    }

    /// The bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.in_pieces + self.buf.len()
    }

    /// Whether no byte waits (a flush may still be due).
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where encoded packets go: after everything waiting.
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends `bytes` as they are, after everything waiting.
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if !self.buf.is_empty() {
            let encoded = self.buf.split().freeze();
            self.push_piece(encoded);
        }
        self.push_piece(bytes);
    }

    fn push_piece(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.in_pieces += piece.len();
            self.pieces.push_back(piece);
        }
    }

    /// The waiting bytes in order, as slices for one vectored write; how many were filled.
    pub(crate) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; SLICES_PER_WRITE]) -> usize {
        let mut filled = 0;
        let waiting = self.pieces.iter().map(|p| &p[..]).chain([&self.buf[..]]);
        for (slot, bytes) in slices.iter_mut().zip(waiting.filter(|b| !b.is_empty())) {
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        filled
    }

    /// Forgets the first `n` bytes: they were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                self.buf.advance(n.min(self.buf.len()));
                return;
            };
            let taken = n.min(front.len());
            front.advance(taken);
            self.in_pieces -= taken;
            n -= taken;
            if front.is_empty() {
                self.pieces.pop_front();
            }
        }
    }

    /// Everything waiting, in one buffer (for a WebSocket frame, a last flush), leaving
    /// nothing.
    pub(crate) fn take_all(&mut self) -> Bytes {
        if self.pieces.is_empty() {
            return self.buf.split().freeze();
        }
        let mut all = BytesMut::with_capacity(self.len());
        for piece in self.pieces.drain(..) {
            all.extend_from_slice(&piece);
        }
        all.extend_from_slice(&self.buf.split());
        self.in_pieces = 0;
        all.freeze()
    }

    /// Drops everything waiting.
    pub(crate) fn clear(&mut self) {
        self.pieces.clear();
        self.in_pieces = 0;
        self.buf.clear();
        self.unflushed = false;
    }

    /// An empty array of slices for [`slices`](Self::slices).
    pub(crate) fn no_slices<'a>() -> [IoSlice<'a>; SLICES_PER_WRITE] {
        [IoSlice::new(&[]); SLICES_PER_WRITE]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn written(out: &Outgoing) -> Vec<u8> {
        let mut slices = Outgoing::no_slices();
        let n = out.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn shared_pieces_keep_their_place_between_encoded_bytes() {
        let mut out = Outgoing::default();
        out.buf().extend_from_slice(b"head1");
        out.push_shared(Bytes::from_static(b"PAYLOAD1"));
        out.buf().extend_from_slice(b"ack");
        out.push_shared(Bytes::from_static(b"PAYLOAD2"));
        out.buf().extend_from_slice(b"tail");
        assert_eq!(written(&out), b"head1PAYLOAD1ackPAYLOAD2tail");
        assert_eq!(out.len(), 28);
    }

    #[test]
    fn a_partial_write_resumes_mid_piece() {
        let mut out = Outgoing::default();
        out.buf().extend_from_slice(b"head");
        out.push_shared(Bytes::from_static(b"payload"));
        out.buf().extend_from_slice(b"next");
        out.advance(6);
        assert_eq!(written(&out), b"yloadnext");
        out.advance(7);
        assert_eq!(written(&out), b"xt");
        out.advance(2);
        assert!(out.is_empty());
    }

    #[test]
    fn take_all_gives_every_byte_in_order_and_leaves_nothing() {
        let mut out = Outgoing::default();
        out.buf().extend_from_slice(b"a");
        out.push_shared(Bytes::from_static(b"bb"));
        out.buf().extend_from_slice(b"c");
        assert_eq!(&out.take_all()[..], b"abbc");
        assert!(out.is_empty());
    }
}
