//! No `Debug` output of a public type shows a secret: passwords, enhanced authentication
//! data, WebSocket header values, private keys and database passwords print as `<hidden>`, so
//! that logging a packet, options or a configuration cannot leak a credential. Every public
//! type that can hold one is printed here with the secret in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use mooring::client::{ClientConfig, Property, Proxy, ProxyConfig, TlsConfig, TransportOptions};
use mooring::packet::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, Packet,
    ReasonCode,
};
use mooring::session::{ConnectCredentials, SessionOptions};

const SECRET: &str = "s3cr3t-value";

fn assert_hidden(what: &str, printed: String) {
    assert!(
        !printed.contains(SECRET),
        "{what} shows the secret: {printed}"
    );
    assert!(
        printed.contains("<hidden>"),
        "{what} does not say a secret is set: {printed}"
    );
}

fn secret_bytes() -> Option<Bytes> {
    Some(Bytes::from_static(SECRET.as_bytes()))
}

#[test]
fn packets_hide_passwords_and_authentication_data() {
    let mut connect = Connect::new("c");
    connect.password = secret_bytes();
    assert_hidden("Connect", format!("{connect:?}"));
    let properties = ConnectProperties {
        authentication_method: Some("SCRAM".into()),
        authentication_data: secret_bytes(),
        ..ConnectProperties::default()
    };
    assert_hidden("ConnectProperties", format!("{properties:?}"));
    connect.password = None;
    connect.properties = properties;
    assert_hidden(
        "Packet::Connect",
        format!("{:?}", Packet::Connect(Box::new(connect))),
    );

    let mut connack = ConnAck::new(false);
    connack.properties = ConnAckProperties {
        authentication_method: Some("SCRAM".into()),
        authentication_data: secret_bytes(),
        ..ConnAckProperties::default()
    };
    assert_hidden("ConnAckProperties", format!("{:?}", connack.properties));
    assert_hidden(
        "Packet::ConnAck",
        format!("{:?}", Packet::ConnAck(Box::new(connack))),
    );

    let auth = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: secret_bytes(),
            ..AuthProperties::default()
        },
    };
    assert_hidden("AuthProperties", format!("{:?}", auth.properties));
    assert_hidden("Packet::Auth", format!("{:?}", Packet::Auth(auth)));
}

#[test]
fn session_options_and_credentials_hide_the_password() {
    let mut options = SessionOptions::new("c");
    options.password = secret_bytes();
    assert_hidden("SessionOptions", format!("{options:?}"));
    let credentials = ConnectCredentials {
        username: Some("u".into()),
        password: secret_bytes(),
        ..ConnectCredentials::default()
    };
    assert_hidden("ConnectCredentials", format!("{credentials:?}"));
}

#[test]
fn client_settings_hide_passwords_header_values_and_keys() {
    let mut transport = TransportOptions::default();
    transport
        .websocket_headers
        .push(("Authorization".into(), SECRET.into()));
    let printed = format!("{transport:?}");
    assert!(!printed.contains(SECRET), "TransportOptions: {printed}");

    let proxy = Proxy::parse(&format!("http://gw:{SECRET}@proxy:3128")).unwrap();
    assert_hidden("Proxy", format!("{proxy:?}"));
    assert!(!proxy.to_string().contains(SECRET), "{proxy}");
    transport.proxy = Some(proxy.clone());
    assert_hidden("TransportOptions with a proxy", format!("{transport:?}"));
    let mut proxy_config = ProxyConfig::default();
    proxy_config.url = format!("http://gw:{SECRET}@proxy:3128");
    proxy_config.password = Some(SECRET.into());
    assert_hidden("ProxyConfig", format!("{proxy_config:?}"));

    let mut tls = TlsConfig::default();
    tls.client_key_pem = Some(SECRET.into());
    assert_hidden("TlsConfig", format!("{tls:?}"));

    let mut config = ClientConfig::default();
    config.password = Some(SECRET.into());
    config.tls = Some(tls);
    config.websocket_headers = vec![Property {
        name: "Authorization".into(),
        value: SECRET.into(),
    }];
    assert_hidden("ClientConfig", format!("{config:?}"));
}

#[cfg(feature = "tls")]
#[test]
fn tls_options_never_show_the_private_key() {
    let key = include_str!("data/test-client.key");
    let cert = include_str!("data/test-client.pem");
    let ca = include_str!("data/test-ca.pem");
    let tls = mooring::client::TlsOptions::with_ca_pem(ca.as_bytes())
        .unwrap()
        .client_certificate_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    let printed = format!("{tls:?}");
    let key_body = key.lines().nth(1).unwrap();
    assert!(!printed.contains(key_body), "TlsOptions: {printed}");
}
