//! Connect, subscribe, publish at each QoS, receive, disconnect.
//!
//! `MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin quickstart`
#![forbid(unsafe_code)]

use std::time::Duration;

use mooring::store::MemoryStore;
use mooring::{Client, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let (client, mut messages) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url)
        .client_id("mooring-quickstart")
        .store(MemoryStore::default()) // RedbStore::open(path)? for sessions that survive crashes
        .connect()
        .await?;

    client.subscribe("quickstart/#", QoS::ExactlyOnce).await?;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let delivery = client
            .publish(format!("quickstart/{qos:?}"), "hello", qos)
            .await?;
        println!("{qos:?}: accepted, broker answered {:?}", delivery.await?);
    }
    for _ in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
            .await?
            .ok_or("the client stopped")?;
        println!(
            "received {} at {:?}: {:?}",
            message.topic(),
            message.qos(),
            message.payload()
        );
    }
    client.disconnect().await?;
    Ok(())
}
