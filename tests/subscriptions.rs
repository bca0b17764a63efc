//! Subscriptions and requests, through the tokio driver against an in-process fake broker:
//! made again when the session is lost, refusals, properties, request/response.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mooring::client::{ClientError, ClientEvent};
use mooring::packet::{
    Packet, PubAck, Publish, QoS, ReasonCode, SubscribeProperties, Subscription, UnsubAck,
};
use mooring::store::MemoryStore;
use tokio::time::timeout;

mod support;

use support::*;

#[tokio::test]
async fn subscriptions_wait_for_a_connection_and_are_made_again_when_the_session_is_lost() {
    let mut broker = Broker::new();
    broker.fake.refuse.store(2, Ordering::SeqCst);
    let (client, _m) = builder(&broker, MemoryStore::default())
        .start()
        .await
        .unwrap();
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("plant/+/t", QoS::ExactlyOnce).await }
    });
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let sub = peer.suback(vec![ReasonCode::GrantedQos1]).await;
    assert_eq!(sub.subscriptions[0].filter, "plant/+/t");
    assert_eq!(subscribing.await.unwrap().unwrap(), QoS::AtLeastOnce);

    let mut events = client.events();
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let again = peer.suback(vec![ReasonCode::GrantedQos2]).await;
    assert_eq!(again.subscriptions[0].filter, "plant/+/t");
    next_event(&mut events, |e| {
        matches!(
            e,
            ClientEvent::SessionLost {
                resubscribed: 1,
                ..
            }
        )
    })
    .await;

    // Unsubscribed filters are not made again.
    let unsubscribed = unsubscribe_answered(&client, &mut peer, ReasonCode::Success).await;
    assert_eq!(unsubscribed.unwrap(), ReasonCode::Success);
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    peer.silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_refused_subscription_is_an_error() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("secret/#", QoS::AtLeastOnce).await }
    });
    peer.suback(vec![ReasonCode::NotAuthorized]).await;
    assert!(matches!(
        subscribing.await.unwrap(),
        Err(ClientError::SubscribeRefused {
            reason: ReasonCode::NotAuthorized,
            ..
        })
    ));
}

#[tokio::test]
async fn request_response_matches_by_correlation_data() {
    let mut broker = Broker::new();
    let (client, mut messages, mut peer) = connected_default(&mut broker).await;
    assert_eq!(client.response_topic(), "mooring/response/gw");
    let requesting = tokio::spawn({
        let client = client.clone();
        async move { client.request("svc/time", "now?", WAIT).await }
    });
    let sub = peer.suback(vec![ReasonCode::GrantedQos1]).await;
    assert_eq!(sub.subscriptions[0].filter, "mooring/response/gw");
    let request = peer.publish().await;
    assert_eq!(
        request.properties.response_topic.as_deref(),
        Some("mooring/response/gw")
    );
    let correlation = request.properties.correlation_data.clone().unwrap();
    peer.send(Packet::PubAck(PubAck::new(request.packet_id)))
        .await;
    // An unrelated message on the response topic is not the answer.
    let mut stray = Publish::new("mooring/response/gw", "stray");
    stray.properties.correlation_data = Some(Bytes::from_static(b"other"));
    peer.send(Packet::Publish(stray)).await;
    let mut answer = Publish::new("mooring/response/gw", "12:00");
    answer.properties.correlation_data = Some(correlation);
    peer.send(Packet::Publish(answer)).await;
    let response = requesting.await.unwrap().unwrap();
    assert_eq!(response.payload().as_ref(), b"12:00");

    // The responder's side.
    let mut incoming = Publish::new("svc/time", "now?");
    incoming.properties.response_topic = Some("reply/here".into());
    incoming.properties.correlation_data = Some(Bytes::from_static(b"c1"));
    peer.send(Packet::Publish(incoming)).await;
    let stray = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(
        stray.payload().as_ref(),
        b"stray",
        "unmatched responses reach the stream"
    );
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    drop(client.respond(&message, "12:01").await.unwrap());
    let p = peer.publish().await;
    assert_eq!(p.topic, "reply/here");
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"c1"[..]));
}

#[tokio::test]
async fn subscribe_with_properties_reaches_the_server() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move {
            let props = SubscribeProperties {
                subscription_identifier: Some(9),
                ..Default::default()
            };
            client
                .subscribe_with(
                    vec![
                        Subscription::new("a/#", QoS::AtLeastOnce),
                        Subscription::new("b", QoS::AtMostOnce),
                    ],
                    props,
                )
                .await
        }
    });
    let sub = peer
        .suback(vec![ReasonCode::GrantedQos1, ReasonCode::Success])
        .await;
    assert_eq!(sub.properties.subscription_identifier, Some(9));
    assert_eq!(sub.subscriptions.len(), 2);
    let info = subscribing.await.unwrap().unwrap();
    assert_eq!(
        info.reason_codes,
        vec![ReasonCode::GrantedQos1, ReasonCode::Success]
    );
}

/// A refused UNSUBSCRIBE is an error, as a refused SUBSCRIBE is; "no subscription existed"
/// is a success the caller can read.
#[tokio::test]
async fn a_refused_unsubscribe_is_an_error_naming_the_filter() {
    let mut broker = Broker::new();
    let (client, _messages, mut peer) = connected_default(&mut broker).await;
    for (code, refused) in [
        (ReasonCode::NotAuthorized, true),
        (ReasonCode::NoSubscriptionExisted, false),
    ] {
        match unsubscribe_answered(&client, &mut peer, code).await {
            Err(ClientError::UnsubscribeRefused { filter, reason }) => {
                assert!(refused, "{code:?} is not a refusal");
                assert_eq!((filter.as_str(), reason), ("plant/+/t", code));
            }
            Ok(reason) => {
                assert!(!refused, "{code:?} is a refusal");
                assert_eq!(reason, code);
            }
            Err(other) => panic!("{other}"),
        }
    }
}

/// Unsubscribes `client` from `plant/+/t`; the server answers `code`.
async fn unsubscribe_answered(
    client: &mooring::Client,
    peer: &mut Peer,
    code: ReasonCode,
) -> Result<ReasonCode, ClientError> {
    let unsubscribing = tokio::spawn({
        let client = client.clone();
        async move { client.unsubscribe("plant/+/t").await }
    });
    match peer.recv().await {
        Packet::Unsubscribe(u) => {
            peer.send(Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Default::default(),
                reason_codes: vec![code],
            }))
            .await
        }
        other => panic!("expected UNSUBSCRIBE, got {other:?}"),
    }
    unsubscribing.await.unwrap()
}
