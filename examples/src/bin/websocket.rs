//! MQTT over WebSocket (`ws://`, or `wss://` with TLS), subprotocol `mqtt`.
//!
//! `MQTT_URL=ws://127.0.0.1:8080/mqtt cargo run -p examples --bin websocket`
//! (`MQTT_URL` defaults to `ws://127.0.0.1:8080/mqtt`.)
#![forbid(unsafe_code)]

use std::time::Duration;

use mooring::store::MemoryStore;
use mooring::{Client, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/mqtt".into());
    let (client, mut messages) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url.clone())
        .client_id("mooring-websocket")
        .store(MemoryStore::default())
        .websocket_header("User-Agent", "mooring-example")
        .connect()
        .await?;
    client.subscribe("ws/echo", QoS::AtLeastOnce).await?;
    client
        .publish("ws/echo", "through a WebSocket", QoS::AtLeastOnce)
        .await?
        .await?;
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await?
        .ok_or("the client stopped")?;
    println!("{url}: {}", String::from_utf8_lossy(message.payload()));
    client.disconnect().await?;
    Ok(())
}
