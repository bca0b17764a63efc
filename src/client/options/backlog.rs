//! Backlog replay by policy: how fast publishes leave, and which topics keep only their
//! newest unsent value.

use super::{ClientBuilder, Settings};
use crate::client::drain_rate::DrainRate;
use crate::client::error::ClientError;
use crate::packet::{is_shared_subscription, validate_topic_filter};

impl ClientBuilder {
    /// Publishes leave no faster than `rate` (messages and bytes per second, bursts of a
    /// tenth of a second's worth): after an outage, the backlog drains at that pace instead
    /// of flooding a metered link, and live publishes take their turn in the same queue.
    /// Retransmissions of messages in flight do not count. Unset, publishes leave as fast as
    /// the server's Receive Maximum allows.
    pub fn drain_rate(mut self, rate: DrainRate) -> Self {
        self.settings.drain_rate = Some(rate);
        self
    }

    /// Topics matching these Topic Filters are of priority `class` (1 to 255; the rest are
    /// class 0): their messages wait in a queue of their own, in the store too, and are sent
    /// before those of lower classes, each class in order. An alarm published behind a day's
    /// backlog goes next, without the backlog being read. A topic that several calls match
    /// takes the highest class. Each class holds its own window of messages in memory
    /// ([`queue_window`](Self::queue_window)): keep classes few.
    pub fn priority<I, S>(mut self, class: u8, filters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let priorities = &mut self.settings.session.backlog.priorities;
        priorities.extend(filters.into_iter().map(|f| (f.into(), class)));
        self
    }

    /// Topics matching these Topic Filters keep only their newest unsent value (a reading,
    /// a state): a publish to such a topic drops the value still waiting in the queue, in the
    /// commit that stores the new one, so the backlog of a long outage holds one value per
    /// topic, across restarts too. The value dropped resolves
    /// [`DeliveryError::Replaced`](crate::client::DeliveryError::Replaced) and is reported
    /// ([`ClientEvent::MessageReplaced`](crate::client::ClientEvent::MessageReplaced),
    /// [`Stats::replaced`](crate::client::Stats)). A value already sent is never taken back:
    /// it may have reached the server.
    pub fn latest_value_topics<I, S>(mut self, filters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings.session.backlog.latest_value_topics =
            filters.into_iter().map(Into::into).collect();
        self
    }
}

/// Refuses a backlog policy that cannot work, and derives the session's part of it.
pub(super) fn apply_backlog(settings: &mut Settings) -> Result<(), ClientError> {
    let refuse = |setting: String, why: String| Err(ClientError::Backlog { setting, why });
    let backlog = &settings.session.backlog;
    let latest = backlog
        .latest_value_topics
        .iter()
        .map(|f| ("latest-value", f, 1));
    let ranked = backlog
        .priorities
        .iter()
        .map(|(f, class)| ("priority", f, *class));
    for (what, filter, class) in latest.chain(ranked) {
        if let Err(error) = validate_topic_filter(filter) {
            return refuse(format!("{what} topic {filter:?}"), error.to_string());
        }
        if is_shared_subscription(filter) {
            return refuse(
                format!("{what} topic {filter:?}"),
                "names a shared subscription, not the topics published to".to_owned(),
            );
        }
        if class == 0 {
            return refuse(
                format!("{what} topic {filter:?}"),
                "is given class 0, which every topic has already: classes start at 1".to_owned(),
            );
        }
    }
    if let Some(rate) = settings.drain_rate
        && let Some(why) = rate.problem()
    {
        return refuse(format!("drain rate {rate:?}"), why.to_owned());
    }
    settings.session.backlog.paced = settings.drain_rate.is_some();
    Ok(())
}
