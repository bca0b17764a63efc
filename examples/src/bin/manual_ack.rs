//! A consumer that acknowledges a message only after its own work is durable: each job is
//! appended to a journal and fsync'd, then acked. If the process dies before the ack, the broker
//! sends the job again; after the ack, never. A job it cannot do is refused with a reason code
//! (`reject`), which the broker does not send again; a message dropped without either (an early
//! `?`, a panic) was not handled: the client hands it over again after a delay, and after its
//! last delivery refuses it (`ClientBuilder::redelivery`).
//!
//! `MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin manual_ack`
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use mooring::store::MemoryStore;
use mooring::{Client, QoS, Refusal};

const JOBS: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let dir = tempfile::tempdir()?;
    let journal_path = dir.path().join("journal");
    let (worker, mut jobs) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url.clone())
        .client_id("mooring-worker")
        .store(MemoryStore::default()) // a durable store in production: acks survive crashes
        .manual_ack(true)
        .connect()
        .await?;
    worker.subscribe("jobs/#", QoS::ExactlyOnce).await?;

    // Something to do: a producer posts a few jobs.
    let (producer, _m) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url)
        .client_id("mooring-job-producer")
        .store(MemoryStore::default())
        .connect()
        .await?;
    for i in 0..JOBS {
        producer
            .publish("jobs/resize", format!("image-{i}.png"), QoS::ExactlyOnce)
            .await?
            .await?;
    }
    producer
        .publish("jobs/resize", "not-an-image.txt", QoS::ExactlyOnce)
        .await?
        .await?;

    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)?;
    let v311 = examples::mqtt_version()? == mooring::packet::ProtocolVersion::V311;
    for _ in 0..=JOBS {
        let job = tokio::time::timeout(Duration::from_secs(5), jobs.recv())
            .await?
            .ok_or("the client stopped")?;
        if !job.payload().ends_with(b".png") {
            let name = String::from_utf8_lossy(job.payload()).into_owned();
            if v311 {
                // MQTT 3.1.1 acknowledgements carry no reason code: a job is only skipped.
                job.ack().await?;
                println!("skipped: {name}");
            } else {
                job.reject(Refusal::PayloadFormatInvalid).await?;
                println!("refused: {name}");
            }
            continue;
        }
        journal.write_all(job.payload())?;
        journal.write_all(b"\n")?;
        journal.sync_data()?; // the work is durable...
        let name = String::from_utf8_lossy(job.payload()).into_owned();
        job.ack().await?; // ...and only then acknowledged
        println!("done and acked: {name}");
    }
    producer.disconnect().await?;
    worker.disconnect().await?;
    Ok(())
}
