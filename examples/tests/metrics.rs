//! The metrics example against mosquitto, scraped as Prometheus scrapes it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use integration::mosquitto::{Mosquitto, free_port};

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample `name{client_id="mooring-metrics"}` (or `name_count{…}`).
fn sample(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{client_id=\"mooring-metrics\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_prometheus_exporter_serves_the_clients_metrics() {
    let broker = Mosquitto::start().unwrap();
    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_metrics"))
        .env("MQTT_URL", broker.url())
        .env("METRICS_ADDR", &addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the example ended early").unwrap();
        if line.starts_with("published") {
            break;
        }
    }
    let text = scrape(&addr);
    assert_eq!(sample(&text, "mooring_publishes_total"), 20.0);
    assert_eq!(sample(&text, "mooring_publishes_acked_total"), 20.0);
    assert_eq!(sample(&text, "mooring_connected"), 1.0);
    assert_eq!(sample(&text, "mooring_in_flight_messages"), 0.0);
    assert_eq!(sample(&text, "mooring_queued_messages"), 0.0);
    assert_eq!(
        sample(&text, "mooring_publish_ack_duration_seconds_count"),
        20.0
    );
    assert!(sample(&text, "mooring_commit_duration_seconds_count") >= 1.0);
    assert_eq!(sample(&text, "mooring_commit_batch_publishes_sum"), 20.0);
    // Histograms with the buckets the example sets.
    assert!(
        text.contains(
            "mooring_commit_duration_seconds_bucket{client_id=\"mooring-metrics\",le=\"0.0005\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("mooring_publish_ack_duration_seconds_bucket{client_id=\"mooring-metrics\",le=\"60\"} 20"),
        "{text}"
    );
    assert_eq!(sample(&text, "mooring_connection_attempts_total"), 1.0);
    assert_eq!(sample(&text, "mooring_queue_limit_messages"), 100_000.0);
    assert_eq!(sample(&text, "mooring_queue_limit_bytes"), 0.0);
    assert_eq!(sample(&text, "mooring_oldest_queued_age_seconds"), 0.0);
    assert_eq!(sample(&text, "mooring_inbound_held_messages"), 0.0);
    assert!(text.contains("# HELP mooring_publishes_total"), "{text}");

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
