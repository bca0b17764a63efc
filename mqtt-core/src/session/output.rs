//! What the session hands the driver: an [`Output`] per turn (packets to write early, store
//! operations to commit, packets to send after), gathered while the session works, and how far
//! the driver got with the earlier ones (written, durable).

use std::time::Instant;

use super::Session;
use crate::packet::Packet;
use crate::store::Batch;

/// Packets to write at once, store operations to commit, then packets to send, in that order.
///
/// The packets in `send` may depend on the operations (a PUBLISH on its record, a PUBREL on the
/// record that says PUBREC arrived): sending one before the commit returned `Ok` could make the
/// server hold a message the client would forget in a crash. Those in `early` depend only on
/// what earlier outputs stored, as the driver reported ([`Session::written`]), and follow every
/// packet written before: a queued message whose record is durable goes out while a commit is
/// in flight, without waiting for it. Drivers write `early`, commit `commit`, write `send`, and
/// then report the output's [`generation`](Output::generation) with [`Session::written`] and,
/// once every operation of it is durable, [`Session::durable`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "the store operations must be committed before the packets are sent"]
pub struct Output {
    /// Write these now, before the commit, in order.
    pub early: Vec<Packet>,
    /// Commit these (group commit: everything gathered since the last poll).
    pub commit: Batch,
    /// Then send these, in order.
    pub send: Vec<Packet>,
    /// The number of this output, counting from 1: what the driver reports back.
    pub generation: u64,
    /// Whether `commit` only removes records of finished flows: nothing in `send` depends on
    /// it and nobody waits for it, so it may wait to join a later commit. A crash before it is
    /// durable resends what the server already acknowledged (a duplicate QoS 1 allows, a PUBREL
    /// the server answers with PUBCOMP), never loses anything.
    pub deferrable: bool,
}

/// What decides whether a flow's packet may go early: the outputs reported written, and the
/// latest one with packets after its commit.
#[derive(Clone, Copy)]
pub(super) struct Placing {
    written: u64,
    late_generation: u64,
}

impl Placing {
    /// Early when the packet's record and every packet before it are written (so the wire
    /// order stays the engine's), otherwise after the commit.
    pub(super) fn place(self, pending: &mut Output, packet: Packet, record_generation: u64) {
        if record_generation <= self.written
            && self.late_generation <= self.written
            && pending.send.is_empty()
        {
            pending.early.push(packet);
        } else {
            pending.send.push(packet);
        }
    }
}

/// The outputs the session hands the driver: the one being gathered, a spare to reuse, and
/// how far the driver got with the earlier ones.
#[derive(Debug)]
pub(super) struct OutputState {
    pub(super) pending: Output,
    /// An output the driver gave back ([`Session::recycle`]), emptied: its lists take the
    /// next output's, so that they do not grow from empty (a copy at each doubling) per turn.
    pub(super) spare: Option<Output>,
    /// Operations in `pending.commit` that only remove records of finished flows.
    pub(super) deferrable_ops: usize,
    /// The next output must not be deferrable: a packet identifier waits for the removal of
    /// its previous flow's record to be durable.
    pub(super) force_commit: bool,
    /// The generation the next output gets.
    pub(super) generation: u64,
    /// Outputs up to this one have been committed (deferrable operations aside) and written.
    pub(super) written: u64,
    /// Outputs up to this one are wholly durable.
    pub(super) durable: u64,
    /// The latest output with packets in `send`: nothing goes early before it is written.
    pub(super) late_generation: u64,
}

impl Default for OutputState {
    fn default() -> Self {
        Self {
            pending: Output::default(),
            spare: None,
            deferrable_ops: 0,
            force_commit: false,
            generation: 1,
            written: 0,
            durable: 0,
            late_generation: 0,
        }
    }
}

impl Session {
    /// Store operations to commit and then packets to send, gathered since the last call;
    /// `None` when there is nothing.
    ///
    /// `now` is when the driver will send the packets: keep alive counts from it.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        if let Some(conn) = self.connection.as_mut() {
            let send = &mut self.out.pending.send;
            if conn.closing {
                // What the session made after DISCONNECT (acks, pings) never goes out
                // [MQTT-3.14.4-1]; the flows behind them resume on the next connection.
                send.clear();
                self.out.pending.early.clear();
            } else if let Some(at) = send.iter().position(|p| matches!(p, Packet::Disconnect(_))) {
                send.truncate(at + 1);
                conn.closing = true;
            }
            if !send.is_empty() || !self.out.pending.early.is_empty() {
                conn.last_sent = now;
            }
        }
        self.stamp_clock_with_commit();
        let force = std::mem::take(&mut self.out.force_commit);
        let pending = &self.out.pending;
        if pending.commit.is_empty()
            && pending.send.is_empty()
            && pending.early.is_empty()
            && !force
        {
            return None;
        }
        let next = self.out.spare.take().unwrap_or_default();
        let mut output = std::mem::replace(&mut self.out.pending, next);
        output.generation = self.out.generation;
        output.deferrable = !force && output.commit.len() == self.out.deferrable_ops;
        self.out.deferrable_ops = 0;
        if !output.send.is_empty() {
            self.out.late_generation = self.out.generation;
        }
        // The queued messages it stores can be read back once it is written.
        self.queue.polled(self.out.generation);
        for lane in self.lanes.values_mut() {
            lane.polled(self.out.generation);
        }
        self.out.generation += 1;
        Some(output)
    }

    /// Gives back an output whose packets and operations the driver has taken: the next
    /// output reuses its lists' memory (its number and flags are set anew when it is polled).
    /// Whatever it still holds is dropped.
    pub fn recycle(&mut self, mut output: Output) {
        output.early.clear();
        output.commit.clear();
        output.send.clear();
        self.out.spare = Some(output);
    }

    /// The driver committed every output up to `generation` (operations that were
    /// [`deferrable`](Output::deferrable) aside) and wrote their packets: their records can be
    /// read back, and queued messages stored by them may go out [`early`](Output::early).
    pub fn written(&mut self, generation: u64) {
        if generation <= self.out.written {
            return;
        }
        self.out.written = generation;
        self.queue.written(generation);
        for lane in self.lanes.values_mut() {
            lane.written(generation);
        }
        self.drain();
    }

    /// Every operation of the outputs up to `generation` is durable, deferrable ones too (and
    /// their packets were written): packet identifiers of the flows they ended may be reused.
    pub fn durable(&mut self, generation: u64) {
        if generation <= self.out.durable {
            return;
        }
        self.out.durable = generation;
        while let Some(&(at, packet_id)) = self.outbound.cooling_order.front() {
            if at > generation {
                break;
            }
            self.outbound.cooling_order.pop_front();
            if self.outbound.cooling.get(&packet_id) == Some(&at) {
                self.outbound.cooling.remove(&packet_id);
            }
        }
        self.out.written = self.out.written.max(generation);
        self.queue.written(generation);
        for lane in self.lanes.values_mut() {
            lane.written(generation);
        }
        self.drain();
    }

    /// Where a flow's packet goes: early when its record and every packet before it are
    /// written, otherwise after the commit.
    pub(super) fn emit_flow_packet(&mut self, packet: Packet, record_generation: u64) {
        let placing = self.placing();
        placing.place(&mut self.out.pending, packet, record_generation);
    }

    pub(super) fn placing(&self) -> Placing {
        Placing {
            written: self.out.written,
            late_generation: self.out.late_generation,
        }
    }
}
