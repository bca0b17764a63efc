//! Where queue records are encoded. Consecutive records share one allocation, which is freed
//! once the last of them is: an allocation per record (4 KiB and more with large payloads)
//! made the allocator grow and trim its heap with a system call every few messages. The room
//! grows with use (from one record up to [`ROOM_MAX`]) and is let go when the session has
//! nothing queued or in flight, so an idle session holds none.

use bytes::{Bytes, BytesMut};

use crate::packet::{Codec, EncodeError, Publish};

/// The largest room records share.
pub(super) const ROOM_MAX: usize = 64 * 1024;

/// The room records are encoded into, and how large the next one will be.
#[derive(Debug, Default)]
pub(super) struct RecordRoom {
    room: BytesMut,
    next_size: usize,
}

impl RecordRoom {
    /// `publish` as a queue record (MQTT v5 wire format). `about` is its encoded size as far as
    /// the caller knows it: a room with less left is replaced (a record larger than that still
    /// fits, in an allocation of its own).
    pub(super) fn encode(&mut self, publish: &Publish, about: usize) -> Result<Bytes, EncodeError> {
        if self.room.capacity() < about {
            self.next_size = (self.next_size * 2).clamp(about, ROOM_MAX.max(about));
            self.room = BytesMut::with_capacity(self.next_size);
        }
        Codec::default().encode_publish(publish, &mut self.room)?;
        Ok(self.room.split().freeze())
    }

    /// Lets the room go (records still held keep their part of it).
    pub(super) fn release(&mut self) {
        *self = Self::default();
    }

    /// The bytes left in the room.
    #[cfg(test)]
    pub(super) fn left(&self) -> usize {
        self.room.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(payload: usize) -> Publish {
        Publish::new("t/1", vec![7u8; payload])
    }

    #[test]
    fn records_are_the_bytes_each_would_be_encoded_alone() {
        let mut room = RecordRoom::default();
        for payload in [0, 10, 4096, 70_000, 3] {
            let p = publish(payload);
            let mut alone = BytesMut::new();
            Codec::default().encode_publish(&p, &mut alone).unwrap();
            assert_eq!(room.encode(&p, payload).unwrap(), alone.freeze());
        }
    }

    #[test]
    fn consecutive_records_share_the_room_as_it_grows() {
        let mut room = RecordRoom::default();
        let about = 4096 + 16;
        let first = room.encode(&publish(4096), about).unwrap();
        assert!(room.left() < about, "the first room holds one record");
        let mut records = vec![first];
        for _ in 0..40 {
            records.push(room.encode(&publish(4096), about).unwrap());
        }
        // Rooms of 1, 2, 4, 8 and then 15 records: far fewer rooms than records.
        let rooms = records
            .windows(2)
            .filter(|pair| pair[0].as_ptr_range().end != pair[1].as_ptr())
            .count()
            + 1;
        assert!(rooms <= 8, "{rooms} rooms for {} records", records.len());
        room.release();
        assert_eq!(room.left(), 0);
    }
}
