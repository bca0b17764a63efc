//! (Feature `toml`.) The reference of every configuration key ([`ClientConfig::reference`]): what each sets,
//! with its default taken from the code and an example. `CONFIGURATION.md` is this text; a
//! test fails when a key is missing here, when a key here is not one the parser takes, or
//! when the file and the code disagree.

use super::{ClientConfig, StoreBackend, StoreConfig, TlsConfig, WillConfig};
use crate::client::policy::Redelivery;

/// One key: its dotted path, an example value (TOML), and what it sets.
pub(crate) struct Key {
    pub(crate) path: &'static str,
    pub(crate) example: &'static str,
    pub(crate) about: &'static str,
}

const fn key(path: &'static str, example: &'static str, about: &'static str) -> Key {
    Key {
        path,
        example,
        about,
    }
}

/// Every key, section by section (a section's keys after its name).
pub(crate) const KEYS: &[Key] = &[
    key(
        "servers",
        r#"["mqtt://10.0.0.5:1883", "mqtts://broker.example"]"#,
        "Server addresses (`mqtt://`, `mqtts://`, `ws://`, `wss://`, `quic://`), tried in order, then round-robin. With the client id, each names its session in the store (see `cluster_scope`).",
    ),
    key(
        "client_id",
        r#""gateway-7""#,
        "The client identifier. Empty asks the server to assign one.",
    ),
    key(
        "cluster_scope",
        r#""plant-7""#,
        "One session for every server under this name, for servers that share session state (a cluster); unset, each server has a session of its own.",
    ),
    key("protocol", r#""3.1.1""#, "`\"5\"` or `\"3.1.1\"`."),
    key(
        "clean_start",
        "true",
        "Discard the server's session on the first connection (reconnects always resume it).",
    ),
    key(
        "session_expiry",
        r#""7days""#,
        "How long the server and the store keep the session after a connection ends: whole seconds, or `\"never\"`; `\"0s\"` ends it with the connection.",
    ),
    key(
        "keep_alive",
        r#""30s""#,
        "Keep alive: whole seconds, at most 65535s; `\"0s\"` turns it off.",
    ),
    key(
        "ping_timeout",
        r#""5s""#,
        "How long to wait for PINGRESP before the connection counts as dead.",
    ),
    key("username", r#""gateway""#, "The user name of CONNECT."),
    key(
        "password",
        r#""s3cret""#,
        "The password of CONNECT. Better kept out of the file: give `password_env` or `password_file` instead (one of the three).",
    ),
    key(
        "password_env",
        r#""MQTT_PASSWORD""#,
        "The password, from this environment variable.",
    ),
    key(
        "password_file",
        r#""/run/secrets/mqtt-password""#,
        "The password, from the first line of this file.",
    ),
    key(
        "user_properties",
        r#"[{ name = "site", value = "plant-7" }]"#,
        "User Properties of CONNECT, in order.",
    ),
    key(
        "manual_ack",
        "true",
        "The application acknowledges each message (`Message::ack`); otherwise a message is acknowledged once the application is done with it.",
    ),
    key(
        "lost_session",
        r#""discard""#,
        "Publishes that may have reached a session the server lost: `\"republish\"` sends them again as new messages, `\"discard\"` reports and drops them.",
    ),
    key(
        "broker_profile",
        r#""aws-iot-core""#,
        "The broker's documented limits and requirements (docs/broker-profiles.md): `\"aws-iot-core\"`, `\"azure-iot-hub\"`, `\"azure-event-grid\"`, `\"hivemq-cloud\"`, `\"emqx\"`, `\"mosquitto\"` or `\"generic\"`. Settings the broker refuses fail when the client is built; publishes beyond its limits are refused when made (unset: none).",
    ),
    key(
        "key_publishes",
        r#""user_property""#,
        "Give every QoS 1 publish an idempotency key, fixed when it is accepted and kept by every retransmission: `\"user_property\"` (MQTT 5) or `\"envelope\"` around the payload (unset: none).",
    ),
    key(
        "deduplicate",
        r#"{ keep_at_most = 100000 }"#,
        "Drop copies of QoS 1 messages the application handled, by their idempotency key; the keys are kept in the store (unset: every copy is handed over).",
    ),
    key(
        "deduplicate.keep_at_most",
        "100000",
        "The most keys kept; the oldest go first.",
    ),
    key(
        "deduplicate.keep_for",
        r#""7d""#,
        "How long a key is kept after its message was handled.",
    ),
    key(
        "deduplicate.envelopes",
        "true",
        "Also open envelopes (only for publishers that seal them).",
    ),
    key(
        "backlog",
        r#"{ messages_per_second = 200 }"#,
        "How the backlog leaves for the server (unset: every value is kept, publishes leave as fast as the server allows).",
    ),
    key(
        "backlog.latest_value_topics",
        r#"["plant/+/temperature"]"#,
        "Topic Filters whose topics keep only their newest unsent value: a publish drops the value still waiting, in the commit that stores the new one.",
    ),
    key(
        "backlog.priorities",
        r#"{ "plant/+/alarm" = 2 }"#,
        "Topic Filters and the priority class (1 to 255) of the topics they match: a class's messages wait in a queue of their own and go before lower classes', each class in order (the rest are class 0).",
    ),
    key(
        "backlog.messages_per_second",
        "200",
        "The most publishes sent per second, backlog and live alike, in queue order (bursts of a tenth of a second's worth).",
    ),
    key(
        "backlog.bytes_per_second",
        "65536",
        "The most bytes of publishes sent per second; a larger publish still goes, and the next ones wait until the rate has paid for it.",
    ),
    key(
        "receive_maximum",
        "100",
        "QoS 1 and 2 messages the server may send unacknowledged (unset: the inbox capacity).",
    ),
    key(
        "maximum_packet_size",
        "1048576",
        "The largest packet the client accepts, in bytes.",
    ),
    key(
        "held_bytes_limit",
        "8388608",
        "Bytes of inbound messages held back for the application at most.",
    ),
    key(
        "in_flight_maximum",
        "40",
        "QoS 1 and 2 publishes in flight at most (with 3.1.1, the only limit).",
    ),
    key(
        "topic_aliases",
        "false",
        "Replace repeated topics by Topic Aliases towards the server.",
    ),
    key(
        "topic_alias_maximum",
        "16",
        "Topic Aliases the server may use towards the client (0: none).",
    ),
    key(
        "request_response_information",
        "true",
        "Ask the server for Response Information (unset: not asked).",
    ),
    key(
        "request_problem_information",
        "false",
        "Whether the server may send Reason Strings and User Properties on failures (unset: it may).",
    ),
    key(
        "resubscribe",
        "false",
        "Make the stored subscriptions again when a server lost the session.",
    ),
    key(
        "response_topic",
        r#""gateway-7/responses""#,
        "The topic `Client::request` asks responses on (unset: `mooring/response/<client id>`).",
    ),
    key(
        "connect_timeout",
        r#""5s""#,
        "How long a connection attempt may take, CONNACK included.",
    ),
    key(
        "write_timeout",
        r#""12s""#,
        "How long a write may make no progress before the connection counts as lost.",
    ),
    key(
        "drain_timeout",
        r#""10s""#,
        "How long `disconnect` waits for messages in flight.",
    ),
    key(
        "follow_server_references",
        "true",
        "Dial the server a DISCONNECT or CONNACK with 0x9C or 0x9D names.",
    ),
    key(
        "prefer_last_server",
        "true",
        "Start each round of attempts at the server that worked last.",
    ),
    key(
        "queue_limit",
        "5000000",
        "Messages the durable queue holds at most.",
    ),
    key(
        "queue_limit_bytes",
        "1073741824",
        "Bytes the durable queue holds at most (unset: no limit but `queue_limit`).",
    ),
    key(
        "queue_full",
        r#""drop_oldest""#,
        "What a publish does when the queue is full: `\"wait\"`, `\"fail\"` or `\"drop_oldest\"`.",
    ),
    key(
        "inbox_capacity",
        "256",
        "Messages the inbox holds for the application.",
    ),
    key(
        "channel_capacity",
        "64",
        "Requests from `Client` handles waiting for the connection task.",
    ),
    key(
        "websocket_headers",
        r#"[{ name = "Authorization", value = "Bearer t0ken" }]"#,
        "HTTP headers of the WebSocket handshake, in order.",
    ),
    key(
        "proxies",
        r#"[{ url = "socks5h://10.0.0.1:1080", username = "gw", password_env = "PROXY_PASSWORD" }]"#,
        "Proxies the servers are reached through: `url` (`http://` for HTTP CONNECT, `socks5://`, or `socks5h://` where the proxy resolves the server's name), `username`, the password (`password`, `password_env` or `password_file`), and `servers` (the addresses, as in `servers`, that go through it; none: every server no other entry names). TLS and WebSocket run inside the tunnel.",
    ),
    key(
        "proxy_from_env",
        "true",
        "Servers without a proxy take the one the environment names, read at each attempt: `https_proxy` for `mqtts://` and `wss://`, `http_proxy` for `mqtt://` and `ws://`, then `all_proxy`; hosts `no_proxy` lists are reached directly.",
    ),
    key(
        "will",
        r#"{ topic = "site/status", payload = "offline" }"#,
        "The Will Message (unset: none).",
    ),
    key("will.topic", r#""site/status""#, "Its topic."),
    key(
        "will.payload",
        r#""gateway offline""#,
        "Its payload, as text.",
    ),
    key("will.qos", "1", "Its QoS: 0, 1 or 2."),
    key("will.retain", "true", "Whether it is retained."),
    key(
        "will.delay",
        r#""30s""#,
        "Will Delay Interval: how long the server waits after the connection ended (unset: 0).",
    ),
    key(
        "will.message_expiry",
        r#""1h""#,
        "Its Message Expiry Interval (unset: it does not expire).",
    ),
    key(
        "will.payload_is_utf8",
        "true",
        "Payload Format Indicator: the payload is UTF-8 text.",
    ),
    key("will.content_type", r#""text/plain""#, "Its Content Type."),
    key(
        "will.response_topic",
        r#""site/ack""#,
        "Its Response Topic.",
    ),
    key(
        "will.correlation_data",
        r#""w-1""#,
        "Its Correlation Data, as text.",
    ),
    key(
        "will.user_properties",
        r#"[{ name = "k", value = "v" }]"#,
        "Its User Properties, in order.",
    ),
    key(
        "redelivery",
        r#"{ max_deliveries = 3 }"#,
        "What happens to a message the application did not handle (unset: handed over again after 1 s, at most 5 times, then refused).",
    ),
    key(
        "redelivery.delay",
        r#""2s""#,
        "How long a released message waits before it is handed over again.",
    ),
    key(
        "redelivery.max_deliveries",
        "3",
        "The most times a message is handed to the application (at least 1).",
    ),
    key(
        "redelivery.exhausted",
        r#"{ dead_letter = "gateway-7/dead" }"#,
        "After the last delivery: `{ refuse = \"unspecified\" }` (or another refusal), `\"discard\"`, or `{ dead_letter = \"topic\" }`.",
    ),
    key(
        "reconnect",
        r#"{ initial = "200ms" }"#,
        "The reconnect policy.",
    ),
    key(
        "reconnect.initial",
        r#""200ms""#,
        "The bound of the first delay (each delay is drawn at random below its bound).",
    ),
    key(
        "reconnect.factor",
        "1.5",
        "How much the bound grows per failed round of attempts (at least 1).",
    ),
    key(
        "reconnect.maximum",
        r#""1m""#,
        "The bound stops growing here.",
    ),
    key(
        "reconnect.max_attempts",
        "40",
        "Stop after this many failed attempts in a row (unset: never).",
    ),
    key(
        "reconnect.stable_after",
        r#""30s""#,
        "A connection up this long starts the delays again from `initial`; one that ends sooner counts as a failed attempt.",
    ),
    key(
        "queue_window",
        r#"{ messages = 512 }"#,
        "How much of the durable queue stays in memory (the rest is read back from the store).",
    ),
    key("queue_window.messages", "512", "Messages."),
    key("queue_window.bytes", "1048576", "Bytes."),
    key(
        "tls",
        r#"{ ca_file = "ca.pem" }"#,
        "TLS for `mqtts://`, `wss://` and `quic://` servers (unset: the system's roots, read once per process; feature `tls`). Reconnections resume the last TLS session.",
    ),
    key(
        "tls.ca_file",
        r#""/etc/gateway/ca.pem""#,
        "PEM file of the CA certificates to trust (with neither this nor `ca_pem`: the system's roots).",
    ),
    key(
        "tls.ca_pem",
        r#""-----BEGIN CERTIFICATE-----\n...""#,
        "The CA certificates to trust, as PEM text.",
    ),
    key(
        "tls.client_cert_file",
        r#""/etc/gateway/client.pem""#,
        "PEM file of the client certificate chain.",
    ),
    key(
        "tls.client_key_file",
        r#""/etc/gateway/client.key""#,
        "PEM file of the client's private key.",
    ),
    key(
        "tls.client_cert_pem",
        r#""-----BEGIN CERTIFICATE-----\n...""#,
        "The client certificate chain, as PEM text.",
    ),
    key(
        "tls.client_key_pem",
        r#""-----BEGIN PRIVATE KEY-----\n...""#,
        "The client's private key, as PEM text: read, never written back (`to_toml` refuses it; name the file instead).",
    ),
    key(
        "tls.client_key_pkcs11",
        r#""pkcs11:token=gateway;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/gateway/pin""#,
        "The client's private key in a PKCS#11 token (feature `pkcs11`), as an RFC 7512 URI; the certificate is `client_cert_file`/`client_cert_pem`, or the one stored beside the key. A `pin-value` is read, never written back (`to_toml` refuses it; use `pin-source`).",
    ),
    key(
        "tls.server_name",
        r#""broker.example""#,
        "The name to verify the server's certificate against, instead of the host.",
    ),
    key(
        "tls.alpn",
        r#"["mqtt"]"#,
        "ALPN protocols to offer, in order (a cloud broker serving MQTT on port 443 picks the protocol by it).",
    ),
    key(
        "store",
        r#"{ backend = "memory" }"#,
        "The session store `ClientConfig::open_store` opens (unset: the application gives one to the builder).",
    ),
    key(
        "store.backend",
        r#""redb""#,
        "`\"redb\"` (a file), `\"sqlite\"` (a file), `\"sled\"` (a directory), `\"postgres\"` (a database a standby shares) or `\"memory\"`; each but memory needs its feature.",
    ),
    key(
        "store.path",
        r#""/var/lib/gateway/sessions.redb""#,
        "The file (redb, SQLite) or directory (sled).",
    ),
    key(
        "store.connection",
        r#""host=db user=gateway dbname=mooring""#,
        "The PostgreSQL connection as libpq takes it, best without its password.",
    ),
    key(
        "store.password_env",
        r#""GATEWAY_DB_PASSWORD""#,
        "The database password, from this environment variable.",
    ),
    key(
        "store.password_file",
        r#""/run/secrets/db-password""#,
        "The database password, from the first line of this file.",
    ),
];

/// The default of `path` as TOML, from the code: a top-level key from
/// [`ClientConfig::default`], a key of a section unset by default from that section's own
/// default; `None` when unset.
pub(crate) fn default_of(path: &str) -> Option<String> {
    let mut root = toml::Table::try_from(ClientConfig::default()).ok()?;
    let sections = [
        ("will", toml::Value::try_from(WillConfig::default())),
        ("redelivery", toml::Value::try_from(Redelivery::default())),
        ("tls", toml::Value::try_from(TlsConfig::default())),
        (
            "store",
            toml::Value::try_from(StoreConfig::new(StoreBackend::Redb)),
        ),
    ];
    let top_level = !path.contains('.');
    for (name, value) in sections {
        if !top_level {
            root.insert(name.to_owned(), value.ok()?);
        }
    }
    let mut value = toml::Value::Table(root);
    for part in path.split('.') {
        value = value.as_table()?.get(part)?.clone();
    }
    Some(match value {
        toml::Value::Table(table) => toml::Value::Table(table).to_string().replace('\n', " "),
        other => other.to_string(),
    })
}

impl ClientConfig {
    /// The reference of every configuration key, as Markdown: its default (from the code),
    /// an example and what it sets. `mooring config reference` prints it; the repository's
    /// `CONFIGURATION.md` is this text.
    pub fn reference() -> String {
        let mut out = String::from(REFERENCE_HEAD);
        let mut section: Option<&str> = None;
        for key in KEYS {
            // A key is in the section named by its first part when keys below it exist (a
            // section's own key leads its table), else at the top level.
            let first = key.path.split('.').next().unwrap_or_default();
            let prefix = format!("{first}.");
            let this = if KEYS.iter().any(|k| k.path.starts_with(&prefix)) {
                first
            } else {
                ""
            };
            if section != Some(this) {
                section = Some(this);
                let heading = if this.is_empty() {
                    "Top level".to_owned()
                } else {
                    format!("`[{this}]`")
                };
                out.push_str(&format!(
                    "\n## {heading}\n\n| Key | Default | Example | What it sets |\n|---|---|---|---|\n"
                ));
            }
            let default = match default_of(key.path) {
                _ if key.path == "store.backend" => "required".to_owned(),
                Some(value) => format!("`{}`", value.replace('|', "\\|")),
                None => "unset".to_owned(),
            };
            out.push_str(&format!(
                "| `{}` | {} | `{}` | {} |\n",
                key.path,
                default,
                key.example.replace('|', "\\|"),
                key.about
            ));
        }
        out
    }
}

const REFERENCE_HEAD: &str = "# Configuration reference

Every key of a Mooring configuration file (`ClientConfig`, TOML), generated from the code: \
`mooring config reference` prints this text, and a test fails when this file and the code \
disagree. `mooring config check FILE` validates a file and prints the settings in effect.

Every key is optional: a key left out keeps its default. A key the client does not know is \
an error naming it, as is a value that would silently mean something else (keep alive \
`\"500ms\"`, which the protocol would count as 0, that is off). Durations are written as \
`\"30s\"`, `\"250ms\"`, `\"1h 30m\"`, `\"7days\"`. Sizes are in bytes. Secrets are best kept \
out of the file: `password_env`, `password_file`, `store.password_env`, \
`store.password_file`, `tls.client_key_file`.

A section that is unset by default (`[will]`, `[redelivery]`, `[tls]`, `[store]`) takes the \
defaults shown for its keys once it is written.
";
