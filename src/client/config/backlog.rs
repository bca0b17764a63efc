//! `[backlog]`: how the backlog leaves for the server, as a file says it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::drain_rate::DrainRate;

/// `[backlog]`: latest-value topics and the drain rate
/// ([`ClientBuilder::latest_value_topics`](crate::ClientBuilder::latest_value_topics),
/// [`ClientBuilder::drain_rate`](crate::ClientBuilder::drain_rate)).
///
/// ```toml
/// [backlog]
/// latest_value_topics = ["plant/+/temperature"]
/// messages_per_second = 200
/// bytes_per_second = 65536
///
/// [backlog.priorities]
/// "plant/+/alarm" = 2
/// "spBv1.0/+/NBIRTH/#" = 1
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BacklogConfig {
    /// Topic Filters whose topics keep only their newest unsent value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_value_topics: Vec<String>,
    /// The most publishes sent per second (unset: not limited by count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_per_second: Option<u32>,
    /// The most bytes of publishes sent per second (unset: not limited by size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// Topic Filters and the priority class (1 to 255) of the topics they match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub priorities: BTreeMap<String, u8>,
}

impl BacklogConfig {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The drain rate it names, if any.
    pub(crate) fn drain_rate(&self) -> Option<DrainRate> {
        (self.messages_per_second.is_some() || self.bytes_per_second.is_some()).then_some(
            DrainRate {
                messages_per_second: self.messages_per_second,
                bytes_per_second: self.bytes_per_second,
            },
        )
    }
}
