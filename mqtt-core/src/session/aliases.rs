//! Outbound Topic Aliases of one connection.

use std::collections::HashMap;

use crate::packet::Publish;

/// Outbound Topic Alias mappings of one connection: assigned on first use, the least recently
/// used one reassigned when all the server allows are taken. A mapping goes out with the topic
/// (announced) before the alias is used alone; one whose announcing PUBLISH was taken back
/// before it was written is announced again.
#[derive(Debug, Default)]
pub(super) struct OutAliases {
    maximum: u16,
    /// Topic → (alias, last use, announced).
    by_topic: HashMap<String, (u16, u64, bool)>,
    clock: u64,
}

impl OutAliases {
    /// No mappings yet; at most `maximum` (0 turns aliases off).
    pub(super) fn with_maximum(maximum: u16) -> Self {
        Self {
            maximum,
            ..Self::default()
        }
    }

    /// Rewrites a first transmission to use an alias: the topic alone maps it, an empty topic
    /// reuses the mapping [MQTT-3.3.2-9: never above the server's maximum].
    pub(super) fn apply(&mut self, publish: &mut Publish) {
        if self.maximum == 0 || publish.topic.is_empty() {
            return;
        }
        self.clock += 1;
        if let Some((alias, used, announced)) = self.by_topic.get_mut(&publish.topic) {
            *used = self.clock;
            publish.properties.topic_alias = Some(*alias);
            if *announced {
                publish.topic.clear();
            }
            *announced = true;
            return;
        }
        let alias = if self.by_topic.len() < usize::from(self.maximum) {
            // Aliases 1..=len are taken, so the next is free and within the maximum.
            (self.by_topic.len() + 1) as u16
        } else {
            let victim = self
                .by_topic
                .iter()
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(topic, (alias, _, _))| (topic.clone(), *alias));
            match victim {
                Some((topic, alias)) => {
                    self.by_topic.remove(&topic);
                    alias
                }
                None => return,
            }
        };
        self.by_topic
            .insert(publish.topic.clone(), (alias, self.clock, true));
        publish.properties.topic_alias = Some(alias);
    }

    /// The PUBLISH that announced `alias` for `topic` was taken back unwritten: the next use
    /// of the topic announces it again, if the alias still maps it.
    pub(super) fn unannounce(&mut self, alias: u16, topic: &str) {
        if let Some(entry) = self.by_topic.get_mut(topic).filter(|e| e.0 == alias) {
            entry.2 = false;
        }
    }
}
