//! TLS with a CA of your own and, optionally, a client certificate.
//!
//! ```text
//! MQTT_URL=mqtts://broker.example:8883 MQTT_CA=ca.pem \
//!   [MQTT_CERT=client.pem MQTT_KEY=client.key] cargo run -p examples --bin tls
//! ```
//! `MQTT_URL` defaults to `mqtts://localhost:8883`; without `MQTT_CA` the system's roots are
//! trusted. The server's certificate and name are always verified.
#![forbid(unsafe_code)]

use mooring::client::TlsOptions;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtts://localhost:8883".into());
    let mut tls = match std::env::var("MQTT_CA") {
        Ok(ca) => TlsOptions::with_ca_file(ca)?,
        Err(_) => TlsOptions::system_roots()?,
    };
    if let (Ok(cert), Ok(key)) = (std::env::var("MQTT_CERT"), std::env::var("MQTT_KEY")) {
        tls = tls.client_certificate_files(cert, key)?;
    }
    let (client, _messages) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url.clone())
        .client_id("mooring-tls")
        .store(MemoryStore::default())
        .tls(tls)
        .connect()
        .await?;
    let reason = client
        .publish("tls/hello", "encrypted", QoS::AtLeastOnce)
        .await?
        .await?;
    println!("published over TLS to {url}: {reason:?}");
    client.disconnect().await?;
    Ok(())
}
