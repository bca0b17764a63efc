//! What a publish may carry besides its topic and payload, set by name
//! ([`Client::publish_with_options`](super::Client::publish_with_options)) rather than by
//! building the wire-level [`Publish`].

use std::time::Duration;

use bytes::Bytes;

use crate::packet::{PayloadFormat, Publish, QoS, UserProperty};

/// The options of one publish: QoS, retain and the MQTT 5 properties an application sets.
/// The packet identifier, DUP flag and Topic Alias are the client's.
///
/// ```no_run
/// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use mooring::client::PublishOptions;
/// use mooring::QoS;
///
/// let options = PublishOptions::new(QoS::AtLeastOnce)
///     .retain(true)
///     .message_expiry(Duration::from_secs(3600))
///     .content_type("application/json")
///     .user_property("site", "plant-7");
/// let delivery = client
///     .publish_with_options("site/7/state", r#"{"up":true}"#, options)
///     .await?;
/// # let _ = delivery; Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct PublishOptions {
    qos: QoS,
    retain: bool,
    message_expiry: Option<Duration>,
    utf8_payload: bool,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Bytes>,
    user_properties: Vec<UserProperty>,
}

impl PublishOptions {
    /// A publish at `qos`, nothing else set.
    pub fn new(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    /// The server keeps the message as the topic's retained message.
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// Message Expiry Interval (MQTT 5): the message is dropped if not delivered within this
    /// time, counted in whole seconds, a fraction rounded up. While it waits in the client's
    /// queue the client counts it down too.
    pub fn message_expiry(mut self, expiry: Duration) -> Self {
        self.message_expiry = Some(expiry);
        self
    }

    /// Payload Format Indicator (MQTT 5): the payload is UTF-8 text.
    pub fn utf8_payload(mut self, utf8: bool) -> Self {
        self.utf8_payload = utf8;
        self
    }

    /// Content Type (MQTT 5), a MIME type such as `application/json`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Response Topic (MQTT 5): where the receiver should answer.
    pub fn response_topic(mut self, topic: impl Into<String>) -> Self {
        self.response_topic = Some(topic.into());
        self
    }

    /// Correlation Data (MQTT 5): what the answer carries back.
    pub fn correlation_data(mut self, data: impl Into<Bytes>) -> Self {
        self.correlation_data = Some(data.into());
        self
    }

    /// Adds a User Property (MQTT 5); they are kept in order, repeats allowed.
    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.user_properties.push(UserProperty::new(name, value));
        self
    }

    /// The PUBLISH these options make of `topic` and `payload`.
    pub(crate) fn publish(self, topic: String, payload: Bytes) -> Publish {
        let mut publish = Publish::new(topic, payload);
        publish.qos = self.qos;
        publish.retain = self.retain;
        let properties = &mut publish.properties;
        properties.message_expiry_interval = self.message_expiry.map(super::human::secs_u32);
        properties.payload_format_indicator = self.utf8_payload.then_some(PayloadFormat::Utf8);
        properties.content_type = self.content_type;
        properties.response_topic = self.response_topic;
        properties.correlation_data = self.correlation_data;
        properties.user_properties = self.user_properties;
        publish
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_lands_in_its_field_of_the_publish() {
        let publish = PublishOptions::new(QoS::ExactlyOnce)
            .retain(true)
            .message_expiry(Duration::from_millis(1_500))
            .utf8_payload(true)
            .content_type("text/plain")
            .response_topic("r")
            .correlation_data("c")
            .user_property("k", "v")
            .user_property("k", "w")
            .publish("t".into(), Bytes::from_static(b"x"));
        assert_eq!((publish.qos, publish.retain), (QoS::ExactlyOnce, true));
        let p = &publish.properties;
        assert_eq!(p.message_expiry_interval, Some(2), "rounded up");
        assert_eq!(p.payload_format_indicator, Some(PayloadFormat::Utf8));
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.response_topic.as_deref(), Some("r"));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"c"[..]));
        assert_eq!(
            p.user_properties,
            vec![UserProperty::new("k", "v"), UserProperty::new("k", "w")]
        );
        let plain = PublishOptions::new(QoS::AtMostOnce).publish("t".into(), Bytes::new());
        assert_eq!(plain, Publish::new("t", Bytes::new()));
    }
}
