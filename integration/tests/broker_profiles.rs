//! A broker profile against a real broker: mosquitto set up as AWS IoT Core documents itself
//! (QoS 1 at most, 128 KiB messages, TLS), and a client built with the AWS IoT Core profile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use integration::clients::{WAIT, client};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::client::{BrokerProfile, TlsOptions};
use mooring::session::PublishError;
use mooring::{ClientError, QoS};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_aws_iot_core_would_refuse_are_refused_by_the_client_and_the_rest_arrive() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        extra: vec!["max_qos 1".into(), "max_packet_size 140000".into()],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let ca = broker.pki().unwrap().ca.clone();
    let url = broker.tls_url().unwrap();
    let (gateway, _m) = client(&url, "profiled")
        .tls(TlsOptions::with_ca_file(&ca).unwrap())
        .broker_profile(BrokerProfile::AwsIotCore)
        .connect()
        .await
        .unwrap();
    let (consumer, mut messages) = client(&url, "consumer")
        .tls(TlsOptions::with_ca_file(&ca).unwrap())
        .connect()
        .await
        .unwrap();
    consumer
        .subscribe("site/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    let qos2 = gateway.publish("site/a", "x", QoS::ExactlyOnce).await;
    assert!(
        matches!(
            qos2,
            Err(ClientError::Publish(PublishError::QosNotSupported { .. }))
        ),
        "{qos2:?}"
    );
    let large = gateway
        .publish("site/a", vec![0u8; 129 * 1024], QoS::AtLeastOnce)
        .await;
    assert!(
        matches!(
            large,
            Err(ClientError::Publish(PublishError::OverLimit {
                what: "payload in bytes",
                ..
            }))
        ),
        "{large:?}"
    );
    let deep = gateway
        .publish("site/1/2/3/4/5/6/7/8", "x", QoS::AtLeastOnce)
        .await;
    assert!(
        matches!(
            deep,
            Err(ClientError::Publish(PublishError::OverLimit {
                what: "number of topic levels",
                ..
            }))
        ),
        "{deep:?}"
    );
    assert_eq!(gateway.stats().queued, 0, "nothing refused was stored");

    let delivery = gateway
        .publish(
            "site/1/2/3/4/5/6/7",
            vec![7u8; 128 * 1024],
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    timeout(WAIT, delivery).await.unwrap().unwrap();
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(message.topic(), "site/1/2/3/4/5/6/7");
    assert_eq!(message.payload().len(), 128 * 1024);
    // Still one connection: nothing the broker would have closed it for was sent.
    assert_eq!(gateway.stats().connections, 1);

    // At 3.1.1 the CONNACK says nothing of QoS: the profile alone keeps QoS 2 off the wire.
    let (old, _m) = client(&url, "profiled-311")
        .protocol(mooring::packet::ProtocolVersion::V311)
        .tls(TlsOptions::with_ca_file(&ca).unwrap())
        .broker_profile(BrokerProfile::AwsIotCore)
        .connect()
        .await
        .unwrap();
    let qos2 = old.publish("site/b", "x", QoS::ExactlyOnce).await;
    assert!(
        matches!(
            qos2,
            Err(ClientError::Publish(PublishError::QosNotSupported { .. }))
        ),
        "{qos2:?}"
    );
    assert_eq!(old.stats().queued, 0);
}
