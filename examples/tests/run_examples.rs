//! Runs every example against a mosquitto of its own (plain, WebSocket and TLS listeners):
//! each must exit 0.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};

fn run(bin: &str, args: &[&str], env: &[(&str, String)], stdin: &str) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{bin} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn every_example_runs_against_mosquitto() {
    every_example_runs("5");
}

#[test]
fn every_example_runs_against_mosquitto_at_3_1_1() {
    every_example_runs("3.1.1");
}

/// Runs every example with `MQTT_VERSION=version`.
fn every_example_runs(version: &str) {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        websockets: true,
        tls: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let version = ("MQTT_VERSION", version.to_owned());
    let url = ("MQTT_URL", broker.url());
    for bin in [
        env!("CARGO_BIN_EXE_quickstart"),
        env!("CARGO_BIN_EXE_manual_ack"),
        env!("CARGO_BIN_EXE_request_response"),
        env!("CARGO_BIN_EXE_reconnect_hook"),
        env!("CARGO_BIN_EXE_custom_store"),
    ] {
        run(bin, &[], &[url.clone(), version.clone()], "");
    }
    let ws = ("MQTT_URL", broker.ws_url().unwrap());
    run(
        env!("CARGO_BIN_EXE_websocket"),
        &[],
        &[ws, version.clone()],
        "",
    );
    let pki = broker.pki().unwrap();
    let tls_env = [
        ("MQTT_URL", broker.tls_url().unwrap()),
        ("MQTT_CA", pki.ca.display().to_string()),
        ("MQTT_CERT", pki.client_cert.display().to_string()),
        ("MQTT_KEY", pki.client_key.display().to_string()),
        version.clone(),
    ];
    run(env!("CARGO_BIN_EXE_tls"), &[], &tls_env, "");

    // The gateway survives a restart on its store: two runs, one store.
    let dir = tempfile::tempdir().unwrap();
    let store = (
        "GATEWAY_STORE",
        dir.path().join("gw.redb").display().to_string(),
    );
    let env = [url.clone(), store, version];
    let out = run(env!("CARGO_BIN_EXE_gateway"), &[], &env, "a=1\nb=2\nc=3\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 readings accepted, 0 not delivered"));
    let out = run(
        env!("CARGO_BIN_EXE_gateway"),
        &["--simulate", "20"],
        &env,
        "",
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("session_present=true"), "{log}");

    // The same gateway configured by examples/gateway.toml, pointed at this broker.
    let mut config = mooring::client::ClientConfig::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml"),
    )
    .unwrap();
    assert_eq!(config.queue_full, mooring::QueuePolicy::DropOldest);
    assert_eq!(config.will.as_ref().unwrap().topic, "site/status");
    config.servers = vec![broker.url()];
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config.to_toml().unwrap()).unwrap();
    let configured = [(
        "GATEWAY_STORE",
        dir.path().join("configured.redb").display().to_string(),
    )];
    let out = run(
        env!("CARGO_BIN_EXE_gateway"),
        &["--config", file.to_str().unwrap(), "--simulate", "5"],
        &configured,
        "",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 readings accepted, 0 not delivered"));
}

#[test]
fn decode_packet_names_the_rule_a_bad_packet_breaks() {
    let good = run(
        env!("CARGO_BIN_EXE_decode_packet"),
        &["30 08 00 03 61 2f 62 00 68 69"],
        &[],
        "",
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("Publish"));
}

/// Starts `mosquitto_sub` for one message on `topic`; returns it once it has subscribed.
fn subscriber(broker: &Mosquitto, topic: &str) -> std::process::Child {
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-V", "5", "-q", "2", "-C", "1", "-W", "30", "-t", topic])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // mosquitto_sub has no "subscribed" signal; the broker's log names its SUBSCRIBE.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.log().contains(topic) {
        assert!(Instant::now() < deadline, "mosquitto_sub did not subscribe");
        std::thread::sleep(Duration::from_millis(20));
    }
    sub
}

#[test]
fn the_gateway_publishes_each_line_as_it_arrives() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sub = subscriber(&broker, "gateway/readings");
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("MQTT_URL", broker.url())
        .env(
            "GATEWAY_STORE",
            dir.path().join("gw.redb").display().to_string(),
        )
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = gateway.stdin.take().unwrap();
    input.write_all(b"first=1\n").unwrap();
    input.flush().unwrap();
    // Standard input stays open, as under `tail -f`: the line must go out all the same.
    let out = sub.wait_with_output().unwrap();
    let received = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        received.trim(),
        "first=1",
        "the subscriber got {received:?}"
    );
    input.write_all(b"second=2\n").unwrap();
    drop(input);
    let out = gateway.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 readings accepted"), "{stderr}");
}

/// The gateway's own drop-oldest policy dropping readings while the broker is away is
/// logged, not fatal; SIGTERM then stops it cleanly (exit 0), the rest kept in the store.
#[test]
fn the_gateway_outlives_its_dropped_readings_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "servers = [\"mqtt://127.0.0.1:{port}\"]\nclient_id = \"dropping\"\n\
             queue_limit = 3\nqueue_full = \"drop_oldest\"\n\n[store]\nbackend = \"redb\"\n\
             path = {:?}\n",
            dir.path().join("gw.redb").display().to_string()
        ),
    )
    .unwrap();
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", file.to_str().unwrap(), "--simulate", "10"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = gateway.stderr.take().unwrap();
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.contains("a reading was not delivered"))
        .count()
        < 7
    {
        assert!(Instant::now() < deadline, "no drops reported: {seen:#?}");
        if let Ok(line) = log.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    assert!(gateway.try_wait().unwrap().is_none(), "it kept running");
    let term = Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = gateway.wait().unwrap();
    seen.extend(log.iter());
    assert!(status.success(), "{status}: {seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("10 readings accepted, 7 not delivered")),
        "{seen:#?}"
    );
}
