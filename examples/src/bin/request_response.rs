//! Request/response on MQTT v5's Response Topic and Correlation Data: a responder answers
//! `svc/time`, a requester asks three times.
//!
//! `MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin request_response`
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mooring::store::MemoryStore;
use mooring::{Client, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    if examples::mqtt_version()? == mooring::packet::ProtocolVersion::V311 {
        println!("request/response needs MQTT 5 (Response Topic, Correlation Data): skipped");
        return Ok(());
    }
    let (responder, mut requests) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url.clone())
        .client_id("mooring-time-service")
        .store(MemoryStore::default())
        .connect()
        .await?;
    responder.subscribe("svc/time", QoS::AtLeastOnce).await?;
    let service = tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Err(e) = responder.respond(&request, now.to_string()).await {
                eprintln!("could not answer: {e}");
            }
        }
    });

    let (requester, _m) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url)
        .client_id("mooring-time-client")
        .store(MemoryStore::default())
        .connect()
        .await?;
    for _ in 0..3 {
        let response = requester
            .request("svc/time", "now?", Duration::from_secs(5))
            .await?;
        println!(
            "the time service says {}",
            String::from_utf8_lossy(response.payload())
        );
    }
    requester.disconnect().await?;
    service.abort();
    Ok(())
}
