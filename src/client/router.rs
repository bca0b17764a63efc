//! Dispatching messages by topic filter or Subscription Identifier.

use tokio::sync::mpsc;
use tracing::warn;

use super::inbox::Messages;
use super::message::Message;
pub use crate::packet::topic_matches;
use crate::packet::{TopicError, validate_topic_filter};

struct Route {
    filter: Option<String>,
    subscription_id: Option<u32>,
    tx: mpsc::Sender<Message>,
}

/// Dispatches messages to receivers by topic filter, or by Subscription Identifier when the
/// server supports them (exact even for overlapping filters). Each message goes to the first
/// route that matches, in the order the routes were added; unmatched messages go to the
/// fallback, or are acked and dropped (with a warning) when there is none. Each route's
/// receiver is a [`Messages`] of its own: with automatic ack, asking it for the next message
/// acks the one it handed out before.
///
/// ```
/// # async fn f(messages: mooring::client::Messages) -> Result<(), Box<dyn std::error::Error>> {
/// use mooring::client::Router;
///
/// let mut router = Router::new();
/// let mut telemetry = router.route("plant/+/telemetry")?;
/// let mut alarms = router.route_subscription(7);   // SUBSCRIBE with Subscription Identifier 7
/// let mut other = router.fallback();
/// tokio::spawn(router.run(messages));
/// while let Some(message) = telemetry.recv().await {
///     message.ack().await?;
/// }
/// # let _ = (alarms.recv(), other.recv()); Ok(()) }
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    fallback: Option<mpsc::Sender<Message>>,
    capacity: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// An empty router; each route buffers 256 messages.
    pub fn new() -> Self {
        Self {
            capacity: 256,
            ..Self::default()
        }
    }

    fn add(&mut self, filter: Option<String>, subscription_id: Option<u32>) -> Messages {
        let (tx, rx) = mpsc::channel(self.capacity.max(1));
        self.routes.push(Route {
            filter,
            subscription_id,
            tx,
        });
        Messages::route(rx)
    }

    /// Messages whose topic matches `filter`.
    pub fn route(&mut self, filter: impl Into<String>) -> Result<Messages, TopicError> {
        let filter = filter.into();
        validate_topic_filter(&filter)?;
        Ok(self.add(Some(filter), None))
    }

    /// Messages the server matched to the subscription made with this Subscription Identifier.
    pub fn route_subscription(&mut self, subscription_id: u32) -> Messages {
        self.add(None, Some(subscription_id))
    }

    /// Messages no route takes.
    pub fn fallback(&mut self) -> Messages {
        let (tx, rx) = mpsc::channel(self.capacity.max(1));
        self.fallback = Some(tx);
        Messages::route(rx)
    }

    fn pick(&self, message: &Message) -> Option<&mpsc::Sender<Message>> {
        let ids = &message.publish().properties.subscription_identifiers;
        self.routes
            .iter()
            .find(|r| match (&r.filter, r.subscription_id) {
                (_, Some(id)) => ids.contains(&id),
                (Some(filter), None) => topic_matches(filter, message.topic()),
                (None, None) => false,
            })
            .map(|r| &r.tx)
            .or(self.fallback.as_ref())
    }

    /// Dispatches until the client stops. A message whose route's receiver was dropped, or
    /// that no route takes, is acked and dropped with a warning: the application chose not
    /// to read it.
    ///
    /// Cancel safety: dropping it (aborting its task) drops the router: messages not yet
    /// passed on stay unacknowledged, as with a dropped [`Messages`].
    pub async fn run(self, mut messages: Messages) {
        while let Some(message) = messages.recv_for_route().await {
            let unrouted = match self.pick(&message) {
                Some(tx) => tx.send(message).await.err().map(|e| e.0),
                None => Some(message),
            };
            if let Some(message) = unrouted {
                warn!(topic = %message.topic(), "no route for a message; acked and dropped");
                let _ = message.ack().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn wildcards_follow_the_specification() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+/c", "a/b/c"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+/+", "/x"),
            ("+", ""),
            ("a/+", "a/"),
            ("$SYS/#", "$SYS/x"),
            ("$share/g/a/#", "a/b"),
        ];
        let no = [
            ("a/b", "a/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("a/b", "a/b/c"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a", "A"),
        ];
        for (f, t) in yes {
            assert!(topic_matches(f, t), "{f} should match {t}");
        }
        for (f, t) in no {
            assert!(!topic_matches(f, t), "{f} should not match {t}");
        }
    }
}
