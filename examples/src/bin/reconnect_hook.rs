//! A fresh credential on every connection attempt (Paho's ReconnectHandler case): the hook runs
//! before each attempt and may change the password, CONNECT user properties and TLS settings.
//! The first server here is unreachable, so the hook runs twice.
//!
//! `MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin reconnect_hook`
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mooring::packet::UserProperty;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

/// Stands in for a call to a token service.
async fn fetch_token(n: u32) -> Result<String, std::io::Error> {
    Ok(format!("token-{n}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    // A port nothing listens on: the first attempt fails, the second goes to MQTT_URL.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let version = examples::mqtt_version()?;
    let (client, _messages) = Client::builder()
        .protocol(version)
        .server(format!("mqtt://{unreachable}"))
        .server(url)
        .client_id("mooring-hook")
        .store(MemoryStore::default())
        .before_connect(move |mut attempt| {
            let v5 = version == mooring::packet::ProtocolVersion::V5;
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let token = fetch_token(n).await?;
                println!("attempt {n} to {}: using {token}", attempt.server());
                attempt.username = Some("gateway".into());
                attempt.password = Some(token.into());
                // CONNECT User Properties exist in MQTT 5 only.
                if v5 {
                    attempt.user_properties = vec![UserProperty::new("attempt", n.to_string())];
                }
                Ok(attempt)
            }
        })
        .connect()
        .await?;
    client
        .publish("hook/ok", "connected", QoS::AtLeastOnce)
        .await?
        .await?;
    println!(
        "connected after {} attempts",
        attempts.load(Ordering::SeqCst)
    );
    client.disconnect().await?;
    Ok(())
}
