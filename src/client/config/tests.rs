use std::time::Duration;

use super::*;
use crate::client::ClientBuilder;
use crate::packet::{PayloadFormat, QoS, Will};

#[test]
fn the_default_config_is_the_default_builder() {
    assert_eq!(
        ClientConfig::default(),
        ClientBuilder::default().to_config().unwrap()
    );
    let back = ClientBuilder::from_config(&ClientConfig::default()).unwrap();
    assert_eq!(back.to_config().unwrap(), ClientConfig::default());
}

/// A builder with every setting away from its default.
fn everything() -> ClientBuilder {
    let mut will = Will::new("site/7/status", "offline");
    will.qos = QoS::AtLeastOnce;
    will.retain = true;
    will.properties.will_delay_interval = Some(30);
    will.properties.message_expiry_interval = Some(3600);
    will.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    will.properties.content_type = Some("text/plain".into());
    will.properties.response_topic = Some("site/7/ack".into());
    will.properties.correlation_data = Some("w-1".into());
    will.properties.user_properties = vec![crate::packet::UserProperty::new("k", "v")];
    let b = ClientBuilder::default()
        .server("mqtt://10.0.0.5:1883")
        .server(if cfg!(feature = "tls") {
            "mqtts://10.0.0.6"
        } else {
            "mqtt://10.0.0.6"
        })
        .client_id("gateway-7")
        .cluster_scope("plant")
        .clean_start(true)
        .session_expiry(Duration::from_secs(7 * 86_400))
        .keep_alive(Duration::from_secs(30))
        .ping_timeout(Duration::from_secs(4))
        .credentials("user", "s3cret")
        .will(will)
        .user_property("site", "7")
        .user_property("site", "7b")
        .manual_ack(true)
        .receive_maximum(50)
        .maximum_packet_size(1 << 20)
        .held_bytes_limit(8 << 20)
        .in_flight_maximum(40)
        .topic_aliases(false)
        .topic_alias_maximum(16)
        .request_response_information(true)
        .request_problem_information(false)
        .resubscribe(false)
        .response_topic("gateway-7/responses")
        .connect_timeout(Duration::from_millis(2500))
        .write_timeout(Duration::from_secs(12))
        .drain_timeout(Duration::from_secs(9))
        .reconnect(
            Backoff::default()
                .with_initial(Duration::from_millis(250))
                .with_factor(1.5)
                .with_maximum(Duration::from_secs(120))
                .with_max_attempts(Some(40))
                .with_stable_after(Duration::from_secs(45)),
        )
        .lost_session(crate::session::LostSession::Discard)
        .broker_profile(crate::client::BrokerProfile::Mosquitto)
        .key_publishes(crate::idempotency::KeyCarrier::Envelope)
        .deduplicate(crate::session::Deduplication {
            keep_at_most: 5_000,
            keep_for: Duration::from_secs(2 * 24 * 3600),
            envelopes: true,
        })
        .redelivery(
            Redelivery::default()
                .with_delay(Duration::from_millis(1500))
                .with_max_deliveries(9)
                .with_exhausted(crate::client::Exhausted::DeadLetter(
                    "gateway-7/dead".into(),
                )),
        )
        .latest_value_topics(["plant/+/temperature", "plant/+/state"])
        .priority(2, ["plant/+/alarm"])
        .priority(1, ["spBv1.0/+/NBIRTH/#"])
        .drain_rate(crate::client::DrainRate::messages(200).and_bytes(65_536))
        .follow_server_references(true)
        .prefer_last_server(true)
        .queue_limit(2_000_000, crate::QueuePolicy::DropOldest)
        .queue_limit_bytes(1 << 30)
        .queue_window(512, 1 << 20)
        .inbox_capacity(256)
        .channel_capacity(64)
        .websocket_header("Authorization", "Bearer t0ken")
        .proxy(
            crate::client::Proxy::parse("http://proxy.plant:3128")
                .unwrap()
                .with_credentials("gw", "pr0xy"),
        )
        .proxy_for(
            "mqtt://10.0.0.6:1883",
            crate::client::Proxy::parse("socks5h://10.0.0.1:1080").unwrap(),
        )
        .proxy_from_env(true);
    #[cfg(feature = "tls")]
    let b = {
        let ca = crate::client::TlsOptions::with_ca_pem(CA.as_bytes()).unwrap();
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        b.tls(
            ca.client_certificate_files(data.join("test-client.pem"), data.join("test-client.key"))
                .unwrap()
                .server_name("broker.example")
                .alpn_protocols(["mqtt", "x-amzn-mqtt-ca"]),
        )
    };
    b
}

#[cfg(feature = "tls")]
const CA: &str = include_str!("../../../tests/data/test-ca.pem");
#[cfg(feature = "tls")]
const CERT: &str = include_str!("../../../tests/data/test-client.pem");
#[cfg(feature = "tls")]
const KEY: &str = include_str!("../../../tests/data/test-client.key");

#[test]
fn every_setting_round_trips_builder_config_toml_builder() {
    let built = everything();
    let config = built.to_config().unwrap();
    // Every setting of the test differs from its default, so none can be lost unnoticed
    // (but the protocol: 3.1.1 refuses v5 settings; its own test round-trips it).
    let ours = serde_json::to_value(&config).unwrap();
    let default = serde_json::to_value(ClientConfig::default()).unwrap();
    let (ours, default) = (ours.as_object().unwrap(), default.as_object().unwrap());
    for (key, value) in ours.iter().filter(|(key, _)| *key != "protocol") {
        assert_ne!(Some(value), default.get(key), "{key} is at its default");
    }
    let mut expected = vec![
        "tls",
        "will",
        "user_properties",
        "websocket_headers",
        "proxies",
        "proxy_from_env",
        "key_publishes",
        "deduplicate",
        "broker_profile",
        "backlog",
    ];
    expected.extend(default.keys().map(String::as_str));
    for key in expected {
        #[cfg(not(feature = "tls"))]
        if key == "tls" {
            continue;
        }
        assert!(ours.contains_key(key), "{key} was not written");
    }

    #[cfg(feature = "toml")]
    let config = {
        let text = config.to_toml().unwrap();
        assert!(text.contains("keep_alive = \"30s\""), "{text}");
        assert!(text.contains("session_expiry = \"7days\""), "{text}");
        let read = ClientConfig::from_toml(&text).unwrap();
        assert_eq!(read, config, "{text}");
        read
    };
    let rebuilt = ClientBuilder::from_config(&config).unwrap();
    assert_eq!(rebuilt.to_config().unwrap(), config);
    // The same client: what the driver gets is the same.
    let (a, b) = (built.settings().unwrap(), rebuilt.settings().unwrap());
    assert_eq!(format!("{:?}", a.session), format!("{:?}", b.session));
    assert_eq!(a.servers, b.servers);
    assert_eq!(format!("{:?}", a.transport), format!("{:?}", b.transport));
    assert_eq!(a.backoff, b.backoff);
    assert_eq!(a.drain_rate, b.drain_rate);
    assert_eq!(
        (a.queue_limit, a.queue_limit_bytes, a.queue_policy),
        (b.queue_limit, b.queue_limit_bytes, b.queue_policy)
    );
}

#[test]
fn a_session_that_never_expires_is_written_never() {
    let b = ClientBuilder::default().session_expiry(Duration::MAX);
    let config = b.to_config().unwrap();
    assert_eq!(config.session_expiry, u32::MAX);
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["session_expiry"], "never");
    let back: ClientConfig =
        serde_json::from_value(serde_json::json!({"session_expiry": "never"})).unwrap();
    assert_eq!(back.session_expiry, u32::MAX);
}

#[test]
fn what_a_file_cannot_hold_is_refused_by_name() {
    let binary = ClientBuilder::default().credentials("u", vec![0xff, 0xfe]);
    assert!(matches!(
        binary.to_config(),
        Err(ConfigError::NotRepresentable(what)) if what.contains("password")
    ));
    #[cfg(feature = "tls")]
    {
        let rustls = crate::client::TlsOptions::system_roots()
            .ok()
            .and_then(|o| o.client_config().ok());
        if let Some(rustls) = rustls {
            let whole =
                ClientBuilder::default().tls(crate::client::TlsOptions::from_rustls(rustls));
            assert!(matches!(
                whole.to_config(),
                Err(ConfigError::NotRepresentable(what)) if what.contains("rustls")
            ));
        }
    }
}

#[cfg(feature = "toml")]
fn invalid(text: &str) -> (String, String) {
    match ClientConfig::from_toml(text) {
        Err(ConfigError::Invalid { field, message, .. }) => (field, message),
        other => panic!("{text:?} gave {other:?}"),
    }
}

#[cfg(feature = "toml")]
#[test]
fn a_bad_setting_is_named_in_the_error() {
    let (field, message) = invalid("sever = \"mqtt://x\"");
    assert!(message.contains("sever"), "{field}: {message}");
    let (field, message) = invalid("receive_maximum = \"ten\"");
    assert_eq!(field, "receive_maximum", "{message}");
    let (field, message) = invalid("keep_alive = \"10 parsecs\"");
    assert_eq!(field, "keep_alive");
    assert!(message.contains("\"30s\""), "{message}");
    // What would silently mean something else is refused: a fraction of a second would be
    // cut off (keep alive "500ms" would turn it off), and the protocol's range is kept.
    let (field, message) = invalid("keep_alive = \"500ms\"");
    assert_eq!(field, "keep_alive");
    assert!(message.contains("whole number of seconds"), "{message}");
    let (field, message) = invalid("keep_alive = \"19h\"");
    assert_eq!(field, "keep_alive");
    assert!(message.contains("65535s"), "{message}");
    let (field, message) = invalid("session_expiry = \"1500ms\"");
    assert_eq!(field, "session_expiry");
    assert!(message.contains("whole number of seconds"), "{message}");
    let (field, _) = invalid("[tls]\nalpn = 3");
    assert_eq!(field, "tls.alpn");
    let (field, _) = invalid("[reconnect]\ninitial = 100");
    assert_eq!(field, "reconnect.initial");
    let (field, _) = invalid("queue_full = \"sometimes\"");
    assert_eq!(field, "queue_full");
    let (_, message) = invalid("servers = [");
    assert!(message.contains("line 1"), "{message}");

    let config = ClientConfig::from_toml("[will]\ntopic = \"t\"\nqos = 3").unwrap();
    let err = ClientBuilder::from_config(&config).err().unwrap();
    assert!(err.to_string().contains("will.qos"), "{err}");
}

#[cfg(feature = "toml")]
#[test]
fn a_bad_file_is_named_with_the_setting_as_the_readme_shows() {
    let dir = std::env::temp_dir().join(format!("mooring-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, "[tls]\nalpn = 3\n").unwrap();
    let err = ClientConfig::load(&path).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.ends_with(
            "gateway.toml: setting `tls.alpn`: invalid type: integer `3`, expected a sequence"
        ),
        "{err}"
    );
}

#[cfg(feature = "toml")]
#[test]
fn a_file_that_cannot_be_read_is_named() {
    let err = ClientConfig::load("/nonexistent/gateway.toml").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/gateway.toml"),
        "{err}"
    );
}

#[test]
fn a_3_1_1_config_speaks_3_1_1_and_refuses_what_needs_mqtt_5() {
    let config: ClientConfig = serde_json::from_str(
        r#"{"servers":["mqtt://a"],"protocol":"3.1.1","in_flight_maximum":8}"#,
    )
    .unwrap();
    let b = ClientBuilder::from_config(&config).unwrap();
    assert_eq!(b.to_config().unwrap().protocol, ConfigProtocol::V311);
    let s = b.settings().unwrap();
    assert_eq!(s.session.protocol, crate::packet::ProtocolVersion::V311);
    assert_eq!(s.session.in_flight_maximum, Some(8));
    let bad = serde_json::from_str::<ClientConfig>(r#"{"protocol":"4"}"#);
    assert!(bad.is_err(), "only \"5\" and \"3.1.1\"");
    let v5_only = ClientBuilder::from_config(&config)
        .unwrap()
        .user_property("site", "7")
        .settings();
    assert!(matches!(
        v5_only,
        Err(crate::client::ClientError::NeedsV5(
            "CONNECT User Properties"
        ))
    ));
    let keys_in_a_property = ClientBuilder::from_config(&config)
        .unwrap()
        .key_publishes(crate::idempotency::KeyCarrier::UserProperty)
        .settings();
    assert!(matches!(
        keys_in_a_property,
        Err(crate::client::ClientError::NeedsV5(what)) if what.contains("User Property")
    ));
}

#[test]
fn the_password_and_key_are_never_printed() {
    let mut config = ClientConfig {
        password: Some("s3cret".into()),
        ..ClientConfig::default()
    };
    config.tls = Some(TlsConfig {
        client_key_pem: Some("-----BEGIN PRIVATE KEY-----".into()),
        ..TlsConfig::default()
    });
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("PRIVATE"),
        "{shown}"
    );
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_file_that_cannot_be_read_is_named() {
    let config: ClientConfig =
        serde_json::from_str(r#"{"servers":["mqtts://h"],"tls":{"ca_file":"/nonexistent.pem"}}"#)
            .unwrap();
    let err = ClientBuilder::from_config(&config).err().unwrap();
    assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
}

#[cfg(all(feature = "tls", feature = "toml"))]
#[test]
fn a_private_key_is_never_written_out() {
    let ca = crate::client::TlsOptions::with_ca_pem(CA.as_bytes()).unwrap();
    let tls = ca
        .client_certificate_pem(CERT.as_bytes(), KEY.as_bytes())
        .unwrap();
    let config = ClientBuilder::default()
        .server("mqtts://h")
        .tls(tls)
        .to_config()
        .unwrap();
    let err = config.to_toml().unwrap_err();
    assert!(
        matches!(&err, ConfigError::NotRepresentable(what) if what.contains("client_key_file")),
        "{err}"
    );
    // Named by its file, the key is not in the text either.
    let text = everything().to_config().unwrap().to_toml().unwrap();
    assert!(text.contains("client_key_file"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[cfg(feature = "toml")]
#[test]
fn the_password_comes_from_the_environment_or_a_file_never_two_places() {
    let dir = tempfile_dir("password");
    let file = dir.join("mqtt-password");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let password = |text: &str| {
        let config = ClientConfig::from_toml(text).unwrap();
        ClientBuilder::from_config(&config)
            .map(|b| b.settings.session.password.clone())
            .map_err(|e| e.to_string())
    };
    // Cargo sets CARGO_PKG_NAME for the tests it runs; the edition forbids setting one here.
    assert_eq!(
        password("password_env = \"CARGO_PKG_NAME\""),
        Ok(Some(bytes::Bytes::from("mooring-mqtt")))
    );
    assert_eq!(
        password(&format!("password_file = {:?}", file.display().to_string())),
        Ok(Some(bytes::Bytes::from("from-the-file")))
    );
    let both = password("password = \"x\"\npassword_env = \"CARGO_PKG_NAME\"").unwrap_err();
    assert!(both.contains("give one of password"), "{both}");
    let unset = password("password_env = \"MOORING_NOT_SET_ANYWHERE\"").unwrap_err();
    assert!(
        unset.contains("password_env") && unset.contains("MOORING_NOT_SET_ANYWHERE"),
        "{unset}"
    );
    let missing = password("password_file = \"/nonexistent/secret\"").unwrap_err();
    assert!(
        missing.contains("password_file") && missing.contains("/nonexistent/secret"),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "toml")]
#[test]
fn the_store_section_names_a_store_and_what_it_needs() {
    let check = |text: &str| {
        let config = ClientConfig::from_toml(text).map_err(|e| e.to_string())?;
        ClientBuilder::from_config(&config)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(check("[store]\nbackend = \"memory\""), Ok(()));
    let err = check("[store]\nbackend = \"memory\"\npath = \"x\"").unwrap_err();
    assert!(err.contains("store.path"), "{err}");
    let err = check("[store]\nbackend = \"postgres\"").unwrap_err();
    assert!(
        err.contains("store.connection") || err.contains("store.backend"),
        "{err}"
    );
    let err = check("[store]\nbackend = \"lmdb\"").unwrap_err();
    assert!(err.contains("store.backend"), "{err}");
    if cfg!(feature = "redb") {
        let err = check("[store]\nbackend = \"redb\"").unwrap_err();
        assert!(err.contains("store.path"), "{err}");
        let dir = tempfile_dir("store");
        let path = dir.join("sessions.redb");
        let config = ClientConfig::from_toml(&format!(
            "[store]\nbackend = \"redb\"\npath = {:?}",
            path.display().to_string()
        ))
        .unwrap();
        let store = config.open_store().unwrap();
        drop(store);
        assert!(path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
    let none = ClientConfig::default().open_store().err().unwrap();
    assert!(none.to_string().contains("store"), "{none}");
}

#[cfg(feature = "toml")]
fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mooring-config-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every dotted key of a TOML table: a table's keys below it, an array or value a leaf (and
/// `redelivery.exhausted`, written as a value or a one-key table, a leaf too).
#[cfg(feature = "toml")]
fn keys_of(table: &toml::Table, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    for (name, value) in table {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.insert(path.clone());
        // A table whose keys are the user's (Topic Filters), not the file's.
        if let toml::Value::Table(inner) = value
            && path != "redelivery.exhausted"
            && path != "backlog.priorities"
        {
            keys_of(inner, &path, out);
        }
    }
}

#[cfg(feature = "toml")]
#[test]
fn every_key_is_in_the_reference_and_every_key_there_is_read() {
    use super::reference::KEYS;
    let documented: std::collections::BTreeSet<String> =
        KEYS.iter().map(|k| k.path.to_owned()).collect();
    // What the parser takes: every documented key, alone, with its example.
    for key in KEYS {
        let text = match key.path.split_once('.') {
            // A store section needs its backend.
            Some(("store", name)) if name != "backend" => {
                format!("[store]\nbackend = \"postgres\"\n{name} = {}", key.example)
            }
            Some((section, name)) => format!("[{section}]\n{name} = {}", key.example),
            None => format!("{} = {}", key.path, key.example),
        };
        if let Err(e) = ClientConfig::from_toml(&text) {
            panic!("the reference's {}: {e}\n{text}", key.path);
        }
    }
    // Every key a configuration can hold is documented: all the builder's settings, and
    // those only a file has (secrets by reference, the store, TLS files).
    let file_only = ClientConfig {
        password_env: Some("V".into()),
        password_file: Some("f".into()),
        store: Some(StoreConfig {
            backend: StoreBackend::Postgres,
            path: Some("p".into()),
            connection: Some("c".into()),
            password_env: Some("V".into()),
            password_file: Some("f".into()),
        }),
        tls: Some(TlsConfig {
            ca_file: Some("a".into()),
            ca_pem: Some("a".into()),
            client_cert_file: Some("c".into()),
            client_key_file: Some("k".into()),
            client_cert_pem: Some("c".into()),
            client_key_pem: Some("k".into()),
            client_key_pkcs11: Some("pkcs11:object=k".into()),
            server_name: Some("s".into()),
            alpn: vec!["mqtt".into()],
        }),
        redelivery: Some(crate::client::Redelivery::default()),
        ..ClientConfig::default()
    };
    let mut keys = std::collections::BTreeSet::new();
    for config in [everything().to_config().unwrap(), file_only] {
        keys_of(&toml::Table::try_from(config).unwrap(), "", &mut keys);
    }
    let undocumented: Vec<&String> = keys.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from the reference (config/reference.rs): {undocumented:?}"
    );
}

#[cfg(feature = "toml")]
#[test]
fn configuration_md_is_the_reference_the_code_prints() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("CONFIGURATION.md");
    let file = std::fs::read_to_string(&path).unwrap_or_default();
    let code = ClientConfig::reference();
    assert!(
        file == code,
        "CONFIGURATION.md differs from the reference the code prints; write it again with \
         `cargo run -p mooring-cli -- config reference > CONFIGURATION.md`"
    );
}

#[cfg(feature = "toml")]
#[test]
fn the_reference_puts_each_key_under_its_section() {
    let text = ClientConfig::reference();
    let mut section = String::new();
    let mut rows = 0;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim_matches(['`', '[', ']']).to_owned();
            continue;
        }
        let Some(key) = line
            .strip_prefix("| `")
            .and_then(|rest| rest.split('`').next())
        else {
            continue;
        };
        rows += 1;
        let first = key.split('.').next().unwrap();
        if section == "Top level" {
            assert!(!key.contains('.'), "{key} at the top level");
        } else {
            assert_eq!(first, section, "{key} under [{section}]");
        }
        if key == "store.backend" {
            assert!(line.contains("| required |"), "{line}");
        }
    }
    assert_eq!(rows, super::reference::KEYS.len());
}

#[test]
fn a_token_pin_is_never_shown_nor_written_out() {
    let uri = "pkcs11:token=t;object=k?module-path=/m.so&pin-value=s3cret&x=1";
    let config = ClientConfig {
        tls: Some(TlsConfig {
            client_key_pkcs11: Some(uri.into()),
            ..TlsConfig::default()
        }),
        ..ClientConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let without = config.tls.as_ref().unwrap().without_secrets();
    assert_eq!(
        without.client_key_pkcs11.as_deref(),
        Some("pkcs11:token=t;object=k?module-path=/m.so&pin-value=<hidden>&x=1")
    );
    #[cfg(feature = "toml")]
    {
        let err = config.to_toml().unwrap_err();
        assert!(err.to_string().contains("pin-source"), "{err}");
        let from_file = ClientConfig {
            tls: Some(TlsConfig {
                client_key_pkcs11: Some("pkcs11:object=k?pin-source=/etc/pin".into()),
                ..TlsConfig::default()
            }),
            ..ClientConfig::default()
        };
        assert!(from_file.to_toml().unwrap().contains("pin-source=/etc/pin"));
    }
}

#[cfg(all(feature = "tls", not(feature = "pkcs11")))]
#[test]
fn a_key_in_a_token_needs_the_pkcs11_feature() {
    let config = ClientConfig {
        servers: vec!["mqtts://h".into()],
        tls: Some(TlsConfig {
            ca_pem: Some(CA.to_owned()),
            client_key_pkcs11: Some("pkcs11:object=k".into()),
            ..TlsConfig::default()
        }),
        ..ClientConfig::default()
    };
    let err = ClientBuilder::from_config(&config).err().unwrap();
    assert!(err.to_string().contains("pkcs11"), "{err}");
}

#[test]
fn a_backlog_policy_that_cannot_work_is_refused_when_the_client_is_built() {
    let base = || ClientBuilder::default().server("mqtt://127.0.0.1:1883");
    for bad in [
        base().latest_value_topics(["plant/#/x"]),
        base().latest_value_topics(["$share/g/plant/+"]),
        base().priority(0, ["plant/+/alarm"]),
        base().priority(1, ["plant/+alarm"]),
        base().drain_rate(crate::client::DrainRate::messages(0)),
        base().drain_rate(crate::client::DrainRate {
            messages_per_second: None,
            bytes_per_second: None,
        }),
    ] {
        assert!(
            matches!(bad.validate(), Err(crate::ClientError::Backlog { .. })),
            "{:?}",
            bad.validate()
        );
    }
    let good = base()
        .latest_value_topics(["plant/+/temperature"])
        .drain_rate(crate::client::DrainRate::messages(10));
    let settings = good.settings().unwrap();
    assert!(settings.session.backlog.paced);
}

#[cfg(feature = "toml")]
#[test]
fn a_backlog_section_is_read_and_a_wrong_field_named() {
    let text = "servers = [\"mqtt://127.0.0.1:1883\"]\n[backlog]\nlatest_value_topics = [\"a/+\"]\nmessages_per_second = 5\n";
    let config = ClientConfig::from_toml(text).unwrap();
    assert_eq!(config.backlog.latest_value_topics, vec!["a/+".to_owned()]);
    assert_eq!(config.backlog.messages_per_second, Some(5));
    let wrong = ClientConfig::from_toml(
        "servers = [\"mqtt://127.0.0.1:1883\"]\n[backlog]\nmessages_per_minute = 5\n",
    )
    .unwrap_err();
    assert!(wrong.to_string().contains("messages_per_minute"), "{wrong}");
}
