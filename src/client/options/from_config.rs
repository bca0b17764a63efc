//! [`ClientConfig`] into a [`ClientBuilder`] and back. `to_config` takes every setting apart
//! by name, so a setting added to the builder does not compile until the configuration says
//! what becomes of it.

use std::time::Duration;

use bytes::Bytes;

use super::super::human::secs_u32 as secs;
use super::{ClientBuilder, Settings};
use crate::client::config::{
    ClientConfig, ConfigError, ConfigLostSession, ConfigProtocol, Property, QueueWindowConfig,
    Secret, WillConfig, proxy_configs_of, proxy_routes_of,
};
use crate::packet::{
    ConnectProperties, PayloadFormat, ProtocolVersion, QoS, UserProperty, Will, WillProperties,
};
use crate::session::{LostSession, SessionOptions};

fn user_properties(properties: &[Property]) -> Vec<UserProperty> {
    properties
        .iter()
        .map(|p| UserProperty::new(p.name.clone(), p.value.clone()))
        .collect()
}

fn properties_of(properties: &[UserProperty]) -> Vec<Property> {
    properties
        .iter()
        .map(|p| Property {
            name: p.name.clone(),
            value: p.value.clone(),
        })
        .collect()
}

fn text(bytes: &Bytes, what: &'static str) -> Result<String, ConfigError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ConfigError::NotRepresentable(what))
}

fn will_of(config: &WillConfig) -> Result<Will, ConfigError> {
    let qos = QoS::from_u8(config.qos).ok_or_else(|| ConfigError::Invalid {
        origin: "the configuration".to_owned(),
        field: "will.qos".to_owned(),
        message: format!("QoS {} does not exist; write 0, 1 or 2", config.qos),
    })?;
    Ok(Will {
        topic: config.topic.clone(),
        payload: Bytes::from(config.payload.clone()),
        qos,
        retain: config.retain,
        properties: WillProperties {
            will_delay_interval: config.delay.map(secs),
            payload_format_indicator: config.payload_is_utf8.map(|utf8| {
                if utf8 {
                    PayloadFormat::Utf8
                } else {
                    PayloadFormat::Unspecified
                }
            }),
            message_expiry_interval: config.message_expiry.map(secs),
            content_type: config.content_type.clone(),
            response_topic: config.response_topic.clone(),
            correlation_data: config.correlation_data.clone().map(Bytes::from),
            user_properties: user_properties(&config.user_properties),
        },
    })
}

fn will_config(will: &Will) -> Result<WillConfig, ConfigError> {
    let Will {
        topic,
        payload,
        qos,
        retain,
        properties,
    } = will;
    let WillProperties {
        will_delay_interval,
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
    } = properties;
    Ok(WillConfig {
        topic: topic.clone(),
        payload: text(payload, "a Will payload that is not UTF-8")?,
        qos: *qos as u8,
        retain: *retain,
        delay: will_delay_interval.map(|s| Duration::from_secs(u64::from(s))),
        message_expiry: message_expiry_interval.map(|s| Duration::from_secs(u64::from(s))),
        payload_is_utf8: payload_format_indicator.map(|f| f == PayloadFormat::Utf8),
        content_type: content_type.clone(),
        response_topic: response_topic.clone(),
        correlation_data: correlation_data
            .as_ref()
            .map(|d| text(d, "Will Correlation Data that is not UTF-8"))
            .transpose()?,
        user_properties: properties_of(user_properties),
    })
}

impl ClientBuilder {
    /// A builder with every setting of `config` (see [`ClientConfig`]); add the store, then
    /// connect. Fails when a TLS file named there cannot be read or parsed, or a value is out
    /// of range.
    pub fn from_config(config: &ClientConfig) -> Result<Self, crate::client::error::ClientError> {
        let mut b = Self::default()
            .client_id(config.client_id.clone())
            .clean_start(config.clean_start)
            .keep_alive(config.keep_alive)
            .ping_timeout(config.ping_timeout)
            .manual_ack(config.manual_ack)
            .held_bytes_limit(config.held_bytes_limit)
            .topic_aliases(config.topic_aliases)
            .topic_alias_maximum(config.topic_alias_maximum)
            .resubscribe(config.resubscribe)
            .connect_timeout(config.connect_timeout)
            .write_timeout(config.write_timeout)
            .drain_timeout(config.drain_timeout)
            .reconnect(config.reconnect.clone())
            .follow_server_references(config.follow_server_references)
            .prefer_last_server(config.prefer_last_server)
            .queue_limit(config.queue_limit, config.queue_full)
            .queue_window(config.queue_window.messages, config.queue_window.bytes)
            .inbox_capacity(config.inbox_capacity)
            .channel_capacity(config.channel_capacity)
            .protocol(match config.protocol {
                ConfigProtocol::V5 => ProtocolVersion::V5,
                ConfigProtocol::V311 => ProtocolVersion::V311,
            });
        if let Some(profile) = config.broker_profile {
            // Before the protocol the file names, which then wins (a conflict is refused).
            b = b.broker_profile(profile).protocol(match config.protocol {
                ConfigProtocol::V5 => ProtocolVersion::V5,
                ConfigProtocol::V311 => ProtocolVersion::V311,
            });
        }
        if let Some(carrier) = config.key_publishes {
            b = b.key_publishes(carrier.into());
        }
        if let Some(limits) = config.deduplicate {
            b = b.deduplicate(limits.into());
        }
        if !config.backlog.latest_value_topics.is_empty() {
            b = b.latest_value_topics(config.backlog.latest_value_topics.iter().cloned());
        }
        if let Some(rate) = config.backlog.drain_rate() {
            b = b.drain_rate(rate);
        }
        for (filter, class) in &config.backlog.priorities {
            b = b.priority(*class, [filter.clone()]);
        }
        b.servers = config.servers.clone();
        let session = &mut b.settings.session;
        session.properties.session_expiry_interval = Some(config.session_expiry);
        session.properties.receive_maximum = config.receive_maximum.map(|m| m.max(1));
        session.properties.maximum_packet_size = config.maximum_packet_size.map(|m| m.max(1));
        session.properties.request_response_information = config.request_response_information;
        session.properties.request_problem_information = config.request_problem_information;
        session.properties.user_properties = user_properties(&config.user_properties);
        session.in_flight_maximum = config.in_flight_maximum.map(|m| m.max(1));
        session.username = config.username.clone();
        session.password = Secret::from_sources(
            "password",
            config.password.as_deref(),
            config.password_env.as_deref(),
            config.password_file.as_deref(),
        )?
        .map(Bytes::from);
        if let Some(store) = &config.store {
            store.check()?;
        }
        session.will = config.will.as_ref().map(will_of).transpose()?;
        b.settings.cluster_scope = config.cluster_scope.clone();
        b.settings.redelivery = config.redelivery.clone();
        b.settings.session.lost_session = match config.lost_session {
            ConfigLostSession::Republish => LostSession::Republish,
            ConfigLostSession::Discard => LostSession::Discard,
        };
        b.settings.queue_limit_bytes = config.queue_limit_bytes.map(|n| n.max(1));
        b.response_topic = config.response_topic.clone();
        b.settings.transport.websocket_headers = config
            .websocket_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let (every, routes) = proxy_routes_of(&config.proxies, config.proxy_from_env)?;
        b.settings.transport.proxy = every;
        b.settings.proxy_routes = routes;
        if let Some(tls) = &config.tls {
            #[cfg(feature = "tls")]
            {
                b = b.tls(crate::client::tls::TlsOptions::from_config(tls)?);
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = tls;
                return Err(crate::client::error::ClientError::FeatureMissing {
                    feature: "tls",
                    needed_for: "the [tls] settings".to_owned(),
                });
            }
        }
        Ok(b)
    }

    /// A builder from a TOML configuration file ([`ClientConfig::load`], then
    /// [`ClientBuilder::from_config`]); an error names the file and the setting at fault.
    #[cfg(feature = "toml")]
    pub fn from_config_file(
        path: impl AsRef<std::path::Path>,
    ) -> Result<Self, crate::client::error::ClientError> {
        Self::from_config(&ClientConfig::load(path)?)
    }

    /// The configuration this builder holds, to write to a file:
    /// `ClientBuilder::from_config(&b.to_config()?)` builds the same client as `b`. What is
    /// code is left out (the store, a connector, the `before_connect` hook, an authenticator);
    /// a setting a file cannot express (a rustls configuration given whole, a password or Will
    /// that is not UTF-8) is an error.
    pub fn to_config(&self) -> Result<ClientConfig, ConfigError> {
        let ClientBuilder {
            servers,
            store: _,
            command_capacity,
            response_topic,
            events: _,
            set_aside: _,
            settings,
        } = self;
        let Settings {
            // Parsed from `servers` when the client starts.
            servers: _,
            session,
            cluster_scope,
            backoff,
            connect_timeout,
            // Shared with other clients of the process: code, not one client's configuration.
            connect_pace: _,
            write_timeout,
            drain_timeout,
            queue_limit,
            queue_limit_bytes,
            queue_policy,
            inbox_capacity,
            redelivery,
            // Code, not configuration.
            wall_clock: _,
            // Derived from the session's `manual_ack` when the client starts.
            manual_ack: _,
            transport,
            proxy_routes,
            connector: _,
            hook: _,
            credentials: _,
            authenticator: _,
            follow_server_references,
            prefer_last_server,
            profile,
            drain_rate,
        } = settings;
        let SessionOptions {
            client_id,
            clean_start,
            keep_alive,
            properties,
            manual_ack,
            ping_timeout,
            will,
            username,
            password,
            topic_aliases,
            resubscribe,
            held_bytes_limit,
            protocol,
            in_flight_maximum,
            queue_window,
            lost_session,
            publish_keys,
            deduplication,
            // Derived from the profile when the client starts.
            publish_limits: _,
            backlog,
        } = session;
        let ConnectProperties {
            session_expiry_interval,
            receive_maximum,
            maximum_packet_size,
            topic_alias_maximum,
            request_response_information,
            request_problem_information,
            user_properties,
            // The authenticator's, set per connection.
            authentication_method: _,
            authentication_data: _,
        } = properties;
        #[cfg(feature = "tls")]
        let tls = match &transport.tls {
            Some(tls) => Some(tls.config().cloned().ok_or(ConfigError::NotRepresentable(
                "a TLS configuration given as a rustls ClientConfig",
            ))?),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls = None;
        Ok(ClientConfig {
            servers: servers.clone(),
            client_id: client_id.clone(),
            cluster_scope: cluster_scope.clone(),
            protocol: match protocol {
                ProtocolVersion::V311 => ConfigProtocol::V311,
                _ => ConfigProtocol::V5,
            },
            clean_start: *clean_start,
            session_expiry: session_expiry_interval.unwrap_or(0),
            keep_alive: Duration::from_secs(u64::from(*keep_alive)),
            ping_timeout: *ping_timeout,
            username: username.clone(),
            password: password
                .as_ref()
                .map(|p| text(p, "a password that is not UTF-8"))
                .transpose()?,
            will: will.as_ref().map(will_config).transpose()?,
            user_properties: properties_of(user_properties),
            manual_ack: *manual_ack,
            redelivery: redelivery.clone(),
            lost_session: match lost_session {
                LostSession::Republish => ConfigLostSession::Republish,
                LostSession::Discard => ConfigLostSession::Discard,
            },
            broker_profile: *profile,
            key_publishes: publish_keys.map(|k| k.carrier.into()),
            deduplicate: deduplication.map(Into::into),
            backlog: super::super::config::BacklogConfig {
                latest_value_topics: backlog.latest_value_topics.clone(),
                messages_per_second: drain_rate.and_then(|r| r.messages_per_second),
                bytes_per_second: drain_rate.and_then(|r| r.bytes_per_second),
                priorities: backlog.priorities.iter().fold(
                    std::collections::BTreeMap::new(),
                    |mut map, (filter, class)| {
                        let kept = map.entry(filter.clone()).or_insert(*class);
                        *kept = (*kept).max(*class);
                        map
                    },
                ),
            },
            receive_maximum: *receive_maximum,
            maximum_packet_size: *maximum_packet_size,
            held_bytes_limit: *held_bytes_limit,
            in_flight_maximum: *in_flight_maximum,
            topic_aliases: *topic_aliases,
            topic_alias_maximum: topic_alias_maximum.unwrap_or(0),
            request_response_information: *request_response_information,
            request_problem_information: *request_problem_information,
            resubscribe: *resubscribe,
            response_topic: response_topic.clone(),
            connect_timeout: *connect_timeout,
            write_timeout: *write_timeout,
            drain_timeout: *drain_timeout,
            reconnect: backoff.clone(),
            follow_server_references: *follow_server_references,
            prefer_last_server: *prefer_last_server,
            queue_limit: *queue_limit,
            queue_limit_bytes: *queue_limit_bytes,
            queue_full: *queue_policy,
            queue_window: QueueWindowConfig {
                messages: queue_window.messages,
                bytes: queue_window.bytes,
            },
            inbox_capacity: *inbox_capacity,
            channel_capacity: *command_capacity,
            tls,
            password_env: None,
            password_file: None,
            // The store is code given to the builder.
            store: None,
            proxies: proxy_configs_of(transport.proxy.as_ref(), proxy_routes),
            proxy_from_env: proxy_routes.from_env,
            websocket_headers: transport
                .websocket_headers
                .iter()
                .map(|(name, value)| Property {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
    }
}
