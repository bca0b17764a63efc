//! Enhanced authentication.

use super::*;

/// A toy challenge-response method: answers a challenge with it reversed and expects "ok".
#[derive(Debug, Default)]
struct Reverse {
    started: usize,
}

impl Authenticator for Reverse {
    fn method(&self) -> &str {
        "REVERSE"
    }
    fn start(&mut self) -> Result<Option<Bytes>, AuthError> {
        self.started += 1;
        Ok(Some(Bytes::from_static(b"hello")))
    }
    fn challenge(&mut self, data: Option<&Bytes>) -> Result<Option<Bytes>, AuthError> {
        let data = data.ok_or_else(|| AuthError("no challenge".into()))?;
        Ok(Some(data.iter().rev().copied().collect()))
    }
    fn success(&mut self, data: Option<&Bytes>) -> Result<(), AuthError> {
        match data.map(|d| &d[..]) {
            Some(b"ok") | None => Ok(()),
            other => Err(AuthError(format!("bad server proof {other:?}"))),
        }
    }
}

fn auth(reason_code: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    Session::auth_packet(reason_code, method.into(), Some(Bytes::from_static(data)))
}

/// The server challenges once; the client's answer is the only packet it sends (the
/// challenge reversed); then the server accepts with its proof.
fn challenge_then_connack(h: &mut Harness, now: Instant) {
    h.session
        .handle_incoming(
            auth(ReasonCode::ContinueAuthentication, "REVERSE", b"abc"),
            now,
        )
        .unwrap();
    assert_eq!(
        h.flush(),
        vec![auth(ReasonCode::ContinueAuthentication, "REVERSE", b"cba")],
        "only the AUTH answer"
    );
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("REVERSE".into());
    connack.properties.authentication_data = Some(Bytes::from_static(b"ok"));
    h.session
        .handle_incoming(Packet::ConnAck(Box::new(connack)), now)
        .unwrap();
}

#[test]
fn enhanced_authentication_exchange_through_the_authenticator() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Reverse::default()));
    let connect = h.session.connect_packet().unwrap();
    assert_eq!(
        connect.properties.authentication_method.as_deref(),
        Some("REVERSE")
    );
    assert_eq!(
        connect.properties.authentication_data.as_deref(),
        Some(&b"hello"[..])
    );
    let now = Instant::now();
    // [MQTT-4.12.0-2/3]: a challenge before CONNACK is answered with Continue.
    challenge_then_connack(&mut h, now);
    assert!(h.session.is_connected());
    // Re-authentication [MQTT-4.12.1-1].
    h.session.reauthenticate().unwrap();
    assert_eq!(
        h.flush(),
        vec![auth(ReasonCode::ReAuthenticate, "REVERSE", b"hello")]
    );
    h.session
        .handle_incoming(auth(ReasonCode::Success, "REVERSE", b"ok"), now)
        .unwrap();
}

#[test]
fn mqtt_4_12_0_5_another_method_or_a_bad_proof_ends_the_connection() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Reverse::default()));
    h.session.connect_packet().unwrap();
    let now = Instant::now();
    let err = h
        .session
        .handle_incoming(auth(ReasonCode::ContinueAuthentication, "OTHER", b"x"), now)
        .unwrap_err();
    assert_eq!(err, ProtocolViolation::AuthMethodMismatch);
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("REVERSE".into());
    connack.properties.authentication_data = Some(Bytes::from_static(b"forged"));
    let err = h.session.handle_connack(&connack, now).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::NotAuthorized);
    assert!(!h.session.is_connected());
}

/// An authenticator of any method, answering nothing.
#[derive(Debug)]
struct Named(&'static str);

impl Authenticator for Named {
    fn method(&self) -> &str {
        self.0
    }
    fn start(&mut self) -> Result<Option<Bytes>, AuthError> {
        Ok(None)
    }
    fn challenge(&mut self, _: Option<&Bytes>) -> Result<Option<Bytes>, AuthError> {
        Ok(None)
    }
    fn success(&mut self, _: Option<&Bytes>) -> Result<(), AuthError> {
        Ok(())
    }
}

#[test]
fn mqtt_4_12_1_1_reauthentication_keeps_the_method_connect_carried() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Named("A")));
    h.session.connect_packet().unwrap();
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("A".into());
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    // The application swaps the authenticator while connected: the connection keeps "A".
    h.session.set_authenticator(Box::new(Named("B")));
    assert!(matches!(
        h.session.reauthenticate(),
        Err(RequestError::AuthMethodChanged { connected, now }) if connected == "A" && now == "B"
    ));
    assert!(h.flush().is_empty(), "no AUTH with another method");
    h.session.set_authenticator(Box::new(Named("A")));
    h.session.reauthenticate().unwrap();
    let sent = h.flush();
    assert!(
        matches!(&sent[..], [Packet::Auth(a)]
            if a.reason_code == ReasonCode::ReAuthenticate
                && a.properties.authentication_method.as_deref() == Some("A")),
        "{sent:?}"
    );
    // The next connection carries the method the authenticator has then.
    h.session.set_authenticator(Box::new(Named("B")));
    h.session.connection_lost(NOW_MS);
    let connect = h.session.connect_packet().unwrap();
    assert_eq!(
        connect.properties.authentication_method.as_deref(),
        Some("B")
    );

    // [MQTT-4.12.0-7]: a CONNECT without a method allows no AUTH on its connection.
    let mut plain = Harness::new();
    plain.connack(false, None);
    plain.session.set_authenticator(Box::new(Named("A")));
    assert!(matches!(
        plain.session.reauthenticate(),
        Err(RequestError::NoAuthenticator)
    ));
    assert!(plain.flush().is_empty());
}

/// An AUTH that does not fit the server's Maximum Packet Size is refused where it is made: a
/// re-authentication fails at once, and an answer to a challenge ends the exchange, which
/// would otherwise wait forever for an AUTH that was never sent.
#[test]
fn an_auth_over_the_servers_maximum_packet_size_is_refused_where_it_is_made() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Reverse::default()));
    h.session.connect_packet().unwrap();
    let now = Instant::now();
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("REVERSE".into());
    connack.properties.maximum_packet_size = Some(20);
    h.session
        .handle_incoming(Packet::ConnAck(Box::new(connack)), now)
        .unwrap();
    h.flush();
    assert!(matches!(
        h.session.reauthenticate(),
        Err(RequestError::Invalid(_))
    ));
    assert!(h.flush().is_empty());
    let error = h
        .session
        .handle_incoming(
            auth(ReasonCode::ContinueAuthentication, "REVERSE", b"0123456789"),
            now,
        )
        .unwrap_err();
    assert!(format!("{error}").contains("cannot be sent"), "{error}");
    assert!(h.flush().iter().all(|p| !matches!(p, Packet::Auth(_))));
}

/// [MQTT-3.1.2-30] With an Authentication Method in CONNECT, nothing but AUTH goes out until
/// CONNACK: a publish and a subscription made meanwhile wait for it, and no PINGREQ is sent.
#[test]
fn mqtt_3_1_2_30_with_an_authentication_method_only_auth_goes_out_before_connack() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Reverse::default()));
    let credentials = h.session.connect_credentials();
    h.session.start_connection(credentials).unwrap();
    let sent = h.flush();
    assert!(matches!(sent.as_slice(), [Packet::Connect(_)]), "{sent:?}");
    h.publish(QoS::AtLeastOnce, "waits");
    let subscribe = |h: &mut Harness| {
        h.session.subscribe(
            vec![Subscription::new("s", QoS::AtLeastOnce)],
            SubscribeProperties::default(),
        )
    };
    // The engine takes requests only on a connection (the client holds them until then).
    assert!(matches!(subscribe(&mut h), Err(RequestError::NotConnected)));
    let now = Instant::now();
    h.session.handle_timeout(now + Duration::from_secs(120));
    assert!(h.flush().is_empty(), "nothing before the server's answer");
    challenge_then_connack(&mut h, now);
    subscribe(&mut h).unwrap();
    let sent: Vec<PacketType> = h.flush().iter().map(Packet::packet_type).collect();
    assert_eq!(
        sent,
        vec![PacketType::Publish, PacketType::Subscribe],
        "what waited goes after CONNACK"
    );
}
