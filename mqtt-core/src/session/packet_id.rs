//! Packet identifiers of one direction: never two in flight at once [MQTT-2.2.1-3], handed out
//! round-robin so that a just-released identifier is reused as late as possible.

/// The identifiers in use, as a bit per identifier (8 KiB), and where the next search starts.
#[derive(Clone)]
pub(crate) struct PacketIds {
    in_use: Box<[u64; 1024]>,
    count: u32,
    next: u16,
}

impl std::fmt::Debug for PacketIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketIds")
            .field("in_use", &self.count)
            .field("next", &self.next)
            .finish()
    }
}

impl Default for PacketIds {
    fn default() -> Self {
        Self {
            in_use: Box::new([0; 1024]),
            count: 0,
            next: 1,
        }
    }
}

fn slot(id: u16) -> (usize, u64) {
    (usize::from(id / 64), 1u64 << (id % 64))
}

impl PacketIds {
    /// Whether `id` is in flight.
    pub(crate) fn contains(&self, id: u16) -> bool {
        let (word, bit) = slot(id);
        self.in_use.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Marks `id` as in flight (a flow restored from the store). Returns false if it already was.
    pub(crate) fn insert(&mut self, id: u16) -> bool {
        if id == 0 || self.contains(id) {
            return false;
        }
        let (word, bit) = slot(id);
        if let Some(w) = self.in_use.get_mut(word) {
            *w |= bit;
            self.count += 1;
        }
        true
    }

    /// Frees `id`.
    pub(crate) fn remove(&mut self, id: u16) {
        if !self.contains(id) {
            return;
        }
        let (word, bit) = slot(id);
        if let Some(w) = self.in_use.get_mut(word) {
            *w &= !bit;
            self.count -= 1;
        }
    }

    /// The number of identifiers in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u32 {
        self.count
    }

    /// A free identifier from `start` on (wrapping), now marked in flight; `None` when all
    /// 65,535 are in use.
    pub(crate) fn allocate_from(&mut self, start: u16) -> Option<u16> {
        self.next = start.max(1);
        self.allocate()
    }

    /// A free identifier, now marked in flight; `None` when all 65,535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        if self.count >= u32::from(u16::MAX) {
            return None;
        }
        let mut id = self.next;
        loop {
            if id != 0 && self.insert(id) {
                self.next = id.wrapping_add(1).max(1);
                return Some(id);
            }
            id = id.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn allocation_is_round_robin_and_wraps_past_65535() {
        let mut ids = PacketIds::default();
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        ids.remove(1);
        // 1 is free again but is not reused before the others.
        assert_eq!(ids.allocate(), Some(3));
        let mut ids = PacketIds {
            next: u16::MAX,
            ..PacketIds::default()
        };
        assert_eq!(ids.allocate(), Some(u16::MAX));
        assert_eq!(ids.allocate(), Some(1), "0 is never an identifier");
    }

    #[test]
    fn a_full_space_gives_none_and_frees_one_at_a_time() {
        let mut ids = PacketIds::default();
        for expected in 1..=u16::MAX {
            assert_eq!(ids.allocate(), Some(expected));
        }
        assert_eq!(ids.allocate(), None);
        ids.remove(777);
        assert_eq!(ids.allocate(), Some(777));
        assert_eq!(ids.allocate(), None);
    }

    proptest! {
        /// Never hands out an identifier that is in flight, never 0, and only runs out when all
        /// 65,535 are taken.
        #[test]
        fn never_two_in_flight(ops in proptest::collection::vec(any::<(bool, u16)>(), 1..2_000)) {
            let mut ids = PacketIds::default();
            let mut model = BTreeSet::new();
            for (allocate, pick) in ops {
                if allocate || model.is_empty() {
                    let id = ids.allocate().expect("space left");
                    prop_assert!(id != 0);
                    prop_assert!(model.insert(id), "{} handed out twice", id);
                } else {
                    let victim = *model.iter().nth(usize::from(pick) % model.len()).unwrap();
                    model.remove(&victim);
                    ids.remove(victim);
                }
                prop_assert_eq!(ids.len() as usize, model.len());
            }
        }
    }
}
