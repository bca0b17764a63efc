// The cloud brokers take TLS only: their addresses need the feature.
#![cfg(feature = "tls")]

use std::time::Duration;

use super::*;
use crate::client::{ClientBuilder, ClientError};
use crate::packet::Will;

fn aws() -> ClientBuilder {
    ClientBuilder::default()
        .server("mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883")
        .client_id("gateway-7")
        .broker_profile(BrokerProfile::AwsIotCore)
}

fn qos2_will() -> Will {
    let mut will = Will::new("gw/status", "gone");
    will.qos = QoS::ExactlyOnce;
    will
}

fn refused(builder: ClientBuilder) -> (BrokerProfile, String, String) {
    let outcome = builder.validate();
    match outcome {
        Err(ClientError::BrokerProfile {
            profile,
            setting,
            why,
        }) => (profile, setting, why),
        other => panic!("not refused by the profile: {other:?}"),
    }
}

#[test]
fn every_profile_has_a_name_that_reads_back_and_a_title() {
    for profile in BrokerProfile::ALL {
        assert_eq!(profile.name().parse::<BrokerProfile>(), Ok(profile));
        assert!(!profile.title().is_empty());
    }
    let err = "aws".parse::<BrokerProfile>().unwrap_err();
    assert!(err.contains("aws-iot-core"), "{err}");
}

#[test]
fn cloud_endpoints_are_recognised_by_their_host() {
    for (host, profile) in [
        (
            "a1b2c3-ats.iot.eu-west-1.amazonaws.com",
            Some(BrokerProfile::AwsIotCore),
        ),
        ("plant.azure-devices.net", Some(BrokerProfile::AzureIotHub)),
        (
            "ns.westeurope-1.ts.eventgrid.azure.net",
            Some(BrokerProfile::AzureEventGrid),
        ),
        ("abc.s1.eu.hivemq.cloud", Some(BrokerProfile::HiveMqCloud)),
        ("x1.ala.eu-central-1.emqxsl.com", Some(BrokerProfile::Emqx)),
        ("s3.eu-west-1.amazonaws.com", None),
        ("broker.example", None),
        ("127.0.0.1", None),
    ] {
        assert_eq!(BrokerProfile::for_host(host), profile, "{host}");
    }
}

#[test]
fn aws_iot_core_refuses_a_qos2_will_plain_tcp_and_keep_alive_out_of_range() {
    let (profile, setting, why) = refused(aws().will(qos2_will()));
    assert_eq!(profile, BrokerProfile::AwsIotCore);
    assert_eq!(setting, "will.qos = 2");
    assert!(why.contains("QoS 1 at most"), "{why}");
    let message = aws().will(qos2_will()).validate().unwrap_err().to_string();
    assert!(
        message.starts_with("will.qos = 2: AWS IoT Core takes QoS 1"),
        "{message}"
    );

    let plain = ClientBuilder::default()
        .server("mqtt://a1b2c3-ats.iot.eu-west-1.amazonaws.com:1883")
        .broker_profile(BrokerProfile::AwsIotCore);
    assert!(refused(plain).2.contains("TLS"));
    assert!(
        refused(aws().keep_alive(Duration::from_secs(1500)))
            .2
            .contains("1200 s at most")
    );
    assert!(
        refused(aws().keep_alive(Duration::from_secs(10)))
            .2
            .contains("30 s at least")
    );
    assert!(
        refused(aws().client_id("c".repeat(129)))
            .2
            .contains("128 bytes")
    );
    assert!(
        refused(aws().session_expiry(Duration::from_secs(30 * 24 * 3600)))
            .2
            .contains("at most")
    );
    aws().validate().unwrap();
}

#[test]
fn the_profiles_publish_limits_reach_the_session() {
    let settings = aws().settings().unwrap();
    let limits = settings.session.publish_limits;
    assert_eq!(limits.maximum_qos, QoS::AtLeastOnce);
    assert_eq!(limits.maximum_payload_bytes, Some(128 * 1024));
    assert_eq!(limits.maximum_topic_levels, Some(8));
    let open = ClientBuilder::default()
        .server("mqtt://localhost")
        .settings()
        .unwrap();
    assert_eq!(open.session.publish_limits, PublishLimits::default());
}

#[cfg(feature = "tls")]
#[test]
fn aws_iot_core_on_port_443_offers_its_alpn_unless_one_is_set() {
    let on_443 = |alpn: Option<&str>| {
        let mut tls = crate::client::TlsOptions::system_roots().unwrap();
        if let Some(alpn) = alpn {
            tls = tls.alpn_protocols([alpn]);
        }
        ClientBuilder::default()
            .server("mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:443")
            .tls(tls)
            .broker_profile(BrokerProfile::AwsIotCore)
            .settings()
            .unwrap()
            .transport
            .tls
            .unwrap()
            .alpn()
            .to_vec()
    };
    assert_eq!(on_443(None), vec![AWS_IOT_ALPN.to_owned()]);
    assert_eq!(on_443(Some("mqtt")), vec!["mqtt".to_owned()]);
    let on_8883 = aws()
        .tls(crate::client::TlsOptions::system_roots().unwrap())
        .settings()
        .unwrap();
    assert!(on_8883.transport.tls.unwrap().alpn().is_empty());
}

#[test]
fn azure_iot_hub_speaks_3_1_1_and_gets_its_user_name_and_a_device_id() {
    let hub = || {
        ClientBuilder::default()
            .server("mqtts://plant.azure-devices.net:8883")
            .client_id("sensor-12")
            .broker_profile(BrokerProfile::AzureIotHub)
    };
    let settings = hub().settings().unwrap();
    assert_eq!(settings.session.protocol, ProtocolVersion::V311);
    assert_eq!(
        settings.session.username.as_deref(),
        Some("plant.azure-devices.net/sensor-12/?api-version=2021-04-12")
    );
    let own = hub().credentials("someone", "sas").settings().unwrap();
    assert_eq!(own.session.username.as_deref(), Some("someone"));
    assert!(
        refused(hub().protocol(ProtocolVersion::V5))
            .2
            .contains("3.1.1")
    );
    assert!(refused(hub().client_id("")).2.contains("device id"));
    assert!(
        refused(hub().keep_alive(Duration::from_secs(1200)))
            .2
            .contains("1177 s")
    );
    let mut retained_will = Will::new("devices/sensor-12/messages/events/", "gone");
    retained_will.retain = true;
    assert!(refused(hub().will(retained_will)).2.contains("retained"));
}

#[test]
fn a_configuration_file_names_the_profile_and_it_round_trips() {
    let config = crate::client::ClientConfig {
        servers: vec!["mqtts://ns.westeurope-1.ts.eventgrid.azure.net:8883".into()],
        client_id: "gw".into(),
        broker_profile: Some(BrokerProfile::AzureEventGrid),
        keep_alive: Duration::from_secs(1200),
        ..crate::client::ClientConfig::default()
    };
    let built = ClientBuilder::from_config(&config).unwrap();
    assert!(refused(built).2.contains("1160 s"));
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["broker_profile"], "azure-event-grid");
    let back: crate::client::ClientConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back.broker_profile, Some(BrokerProfile::AzureEventGrid));
    let bad = serde_json::from_str::<crate::client::ClientConfig>(r#"{"broker_profile":"aws"}"#);
    assert!(bad.unwrap_err().to_string().contains("aws-iot-core"));
}
