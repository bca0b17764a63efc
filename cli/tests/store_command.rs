//! `mooring store …` on stores the real client made: a gateway whose broker stopped answering
//! (three QoS 2 publishes in flight), then went away (five queued), beside a sensor that never
//! reached its broker. Each subcommand runs as a process, as an operator runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::{mooring, text};
use integration::mosquitto::{Mosquitto, free_port};
use mooring::store::layout::{self, KvWrite};
use mooring::store::{
    KvBackend, RedbBackend, RedbStore, SessionKey, SessionStore, SledStore, SqliteStore, StoreError,
};
use mooring::{Client, ClientEvent, QoS};
use serde_json::Value;

fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

/// Runs `args` and expects success.
fn ok(args: &[&str]) -> String {
    let output = mooring(args);
    assert!(
        output.status.success(),
        "mooring {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Redb,
    Sled,
    Sqlite,
}

fn open(kind: Kind, path: &Path) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match kind {
        Kind::Redb => Arc::new(RedbStore::open(path.to_path_buf())?),
        Kind::Sled => Arc::new(SledStore::open(path.to_path_buf())?),
        Kind::Sqlite => Arc::new(SqliteStore::open(path.to_path_buf())?),
    })
}

/// Waits until no handle holds the store any more (the clients' tasks end after their last
/// handle is dropped).
fn wait_until_released(kind: Kind, path: &Path) {
    drop(integration::open_when_free(|| open(kind, path)).unwrap());
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Makes the store: `gateway-7` on mosquitto (one subscription, three QoS 2 publishes in flight
/// to a frozen broker, then five QoS 1 queued once it is gone) and `sensor-2` on a port where
/// nothing listens (two QoS 2 queued). Returns the gateway's server address.
async fn make_store(kind: Kind, path: &Path) -> String {
    let mut broker = Mosquitto::start().unwrap();
    let store = open(kind, path).unwrap();
    let mut builder = Client::builder()
        .server(broker.url())
        .client_id("gateway-7")
        .session_expiry(Duration::from_secs(3600))
        .store_arc(store.clone())
        .reconnect(integration::fast_backoff());
    let mut events = builder.events();
    let (gateway, _messages) = builder.connect().await.unwrap();
    gateway.subscribe("cmd/#", QoS::ExactlyOnce).await.unwrap();
    let pid = broker.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    for i in 0..3 {
        drop(
            gateway
                .publish(
                    format!("site/7/alarm/{i}"),
                    format!("alarm {i}"),
                    QoS::ExactlyOnce,
                )
                .await
                .unwrap(),
        );
    }
    until("three publishes in flight", || {
        gateway.stats().outbound_in_flight == 3
    })
    .await;
    broker.kill();
    let lost = async {
        loop {
            if let Some(ClientEvent::ConnectionLost { .. }) = events.recv().await {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .unwrap();
    for i in 0..5 {
        drop(
            gateway
                .publish("site/7/temp", format!("{{\"t\":{i}}}"), QoS::AtLeastOnce)
                .await
                .unwrap(),
        );
    }
    until("five queued", || gateway.stats().queued == 5).await;

    let nowhere = format!("mqtt://127.0.0.1:{}", free_port().unwrap());
    let (sensor, _m) = Client::builder()
        .server(nowhere)
        .client_id("sensor-2")
        .store_arc(store.clone())
        .start()
        .await
        .unwrap();
    for payload in [&b"\xff\x00binary"[..], b"text"] {
        drop(
            sensor
                .publish("s/2", payload.to_vec(), QoS::ExactlyOnce)
                .await
                .unwrap(),
        );
    }
    until("two queued", || sensor.stats().queued == 2).await;
    let url = broker.url();
    drop((gateway, sensor, store));
    wait_until_released(kind, path);
    url
}

fn row<'a>(rows: &'a [Value], session: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["session"] == session)
        .unwrap_or_else(|| panic!("no session {session} in {rows:?}"))
}

async fn every_subcommand_reads_and_repairs(kind: Kind, file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    let server = make_store(kind, &path).await;
    let file = path.to_str().unwrap();
    let gateway = format!("gateway-7@{server}");

    // list: counts from the store's records. A message sent and not yet acknowledged keeps
    // its queue record, so the three in flight count as queued; `in_flight` counts publish
    // records of the older layout.
    let rows = json_lines(&ok(&["store", "list", file, "--json"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let g = row(&rows, &gateway);
    assert_eq!(
        (
            &g["in_flight"],
            &g["queued"],
            &g["subscriptions"],
            &g["pubrel"]
        ),
        (
            &Value::from(0),
            &Value::from(8),
            &Value::from(1),
            &Value::from(0)
        ),
        "{g}"
    );
    assert_eq!(g["meta"]["session_expiry_interval"], 3600);
    // The queue's age: its oldest message was accepted during this test.
    let oldest = g["oldest_queued_at"].as_str().unwrap();
    let accepted = humantime::parse_rfc3339(oldest).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(accepted)
        .unwrap();
    assert!(age < Duration::from_secs(600), "{oldest}");
    assert_eq!(g["meta"]["protocol"], "5.0");
    let sensor = rows.iter().find(|r| r["client_id"] == "sensor-2").unwrap();
    assert_eq!(sensor["queued"], 2);
    let table = ok(&["store", "list", file]);
    assert!(table.starts_with("SESSION"), "{table}");
    assert!(table.contains("OLDEST QUEUED"), "{table}");
    assert!(table.contains(&gateway), "{table}");

    // show: the records in order, with their stage.
    let shown = ok(&["store", "show", file, "--session", "gateway-7"]);
    assert_eq!(shown.matches("awaiting PUBREC").count(), 0, "{shown}");
    let queued_rows = shown
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("queued"))
        .count();
    assert_eq!(queued_rows, 8, "{shown}");
    assert!(shown.contains("site/7/alarm/2"), "{shown}");
    let records = json_lines(&ok(&[
        "store",
        "show",
        file,
        "--session",
        &gateway,
        "--json",
    ]));
    let alarms: Vec<&Value> = records
        .iter()
        .filter(|r| r["record"] == "queued" && r["qos"] == 2)
        .collect();
    assert_eq!(alarms.len(), 3, "{records:?}");
    for (i, p) in alarms.iter().enumerate() {
        assert_eq!(p["topic"], format!("site/7/alarm/{i}"));
        assert_eq!(p["payload"]["data"], format!("alarm {i}"));
    }
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // export: every record, payloads whole (binary as base64).
    let exported = json_lines(&ok(&["store", "export", file]));
    let queued: Vec<&Value> = exported
        .iter()
        .filter(|r| r["record"] == "queued")
        .collect();
    assert_eq!(queued.len(), 10);
    assert!(
        queued.iter().all(|r| r["accepted_at"].is_string()),
        "{queued:?}"
    );
    assert!(queued.iter().any(|r| r["payload"]["encoding"] == "base64"
        && r["payload"]["data"] == "/wBiaW5hcnk="));
    assert!(
        exported
            .iter()
            .any(|r| r["record"] == "subscription" && r["topic"] == "cmd/#")
    );

    // verify: all readable.
    let verified = ok(&["store", "verify", file]);
    assert!(verified.contains("all readable"), "{verified}");
    assert!(verified.contains("10 queued, 0 in flight"), "{verified}");

    // move-session: the sensor's broker moved.
    let moved = ok(&[
        "store",
        "move-session",
        file,
        "--session",
        "sensor-2",
        "--to",
        "tcp://new.example",
    ]);
    assert!(moved.contains("2 queued"), "{moved}");
    let rows = json_lines(&ok(&["store", "list", file, "--json"]));
    assert_eq!(row(&rows, "sensor-2@mqtt://new.example:1883")["queued"], 2);

    // drop-session: refused without --yes, then done.
    let refused = mooring(&["store", "drop-session", file, "--session", "sensor-2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!(json_lines(&ok(&["store", "list", file, "--json"])).len(), 2);
    ok(&[
        "store",
        "drop-session",
        file,
        "--session",
        "sensor-2",
        "--yes",
    ]);
    let rows = json_lines(&ok(&["store", "list", file, "--json"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["session"], gateway);

    // The gateway's session is intact: the client resumes it with everything in it.
    let store = open(kind, &path).unwrap();
    let key = SessionKey::new(server, "gateway-7");
    let session = store.load(&key).await.unwrap();
    assert_eq!((session.outbound.len(), session.queue.len()), (0, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_works_on_a_redb_store_made_by_the_client() {
    every_subcommand_reads_and_repairs(Kind::Redb, "gateway.redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_works_on_a_sled_store_made_by_the_client() {
    every_subcommand_reads_and_repairs(Kind::Sled, "gateway.sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_works_on_a_sqlite_store_made_by_the_client() {
    every_subcommand_reads_and_repairs(Kind::Sqlite, "gateway.sqlite").await;
}

/// Makes a redb store holding three queued messages of `gateway-7`, offline.
async fn offline_store(path: &Path) {
    let store = Arc::new(RedbStore::open(path.to_path_buf()).unwrap());
    let (client, _m) = Client::builder()
        .server(format!("mqtt://127.0.0.1:{}", free_port().unwrap()))
        .client_id("gateway-7")
        .store_arc(store.clone())
        .start()
        .await
        .unwrap();
    for i in 0..3 {
        drop(
            client
                .publish("t", format!("m{i}"), QoS::AtLeastOnce)
                .await
                .unwrap(),
        );
    }
    until("three queued", || client.stats().queued == 3).await;
    drop((client, store));
    wait_until_released(Kind::Redb, path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_damaged_record_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    let file = path.to_str().unwrap();
    offline_store(&path).await;
    assert!(ok(&["store", "verify", file]).contains("all readable"));

    // One bit of the second queued message flips on disk, its key unchanged.
    let store = RedbStore::open(path.clone()).unwrap();
    let key = store.sessions().await.unwrap().remove(0);
    let (start, end) = layout::queue_range(&key, 0);
    let mut entries = Vec::new();
    store
        .backend()
        .visit_range(&start, Some(&end), &mut |k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    let (damaged_key, mut value) = entries[1].clone();
    let last = value.len() - 6;
    value[last] ^= 0x01;
    store
        .backend()
        .apply(&[KvWrite::Put(damaged_key, value)])
        .unwrap();
    drop(store);

    let verified = mooring(&["store", "verify", file]);
    assert_eq!(verified.status.code(), Some(4), "damaged");
    let report = stdout(&verified);
    assert!(report.contains("checksum does not match"), "{report}");
    assert!(report.contains("1 damaged"), "{report}");
    let json = mooring(&["store", "verify", file, "--json"]);
    let lines = json_lines(&stdout(&json));
    let report = &lines[0];
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
    // The failure too, as the last object, with its class.
    assert_eq!(lines[1]["class"], "damaged", "{lines:?}");

    let exported = mooring(&["store", "export", file]);
    assert!(!exported.status.success());
    let lines = json_lines(&stdout(&exported));
    assert_eq!(lines.iter().filter(|l| l["record"] == "damaged").count(), 1);
    assert_eq!(lines.iter().filter(|l| l["record"] == "queued").count(), 2);
    assert!(
        !mooring(&["store", "show", file, "--session", "gateway-7"])
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_held_by_a_running_client_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    let file = path.to_str().unwrap();
    let (client, _m) = Client::builder()
        .server(format!("mqtt://127.0.0.1:{}", free_port().unwrap()))
        .client_id("gateway-7")
        .store(RedbStore::open(path.clone()).unwrap())
        .start()
        .await
        .unwrap();
    drop(client.publish("t", "kept", QoS::AtLeastOnce).await.unwrap());

    for args in [
        vec![
            "store",
            "drop-session",
            file,
            "--session",
            "gateway-7",
            "--yes",
        ],
        vec![
            "store",
            "move-session",
            file,
            "--session",
            "gateway-7",
            "--to",
            "mqtt://x",
        ],
        vec!["store", "list", file],
    ] {
        let refused = mooring(&args);
        assert_eq!(refused.status.code(), Some(5), "{args:?}: locked");
        // This test's process holds the store: the refusal names it.
        let holder = format!("held by process {}", std::process::id());
        assert!(
            stderr(&refused).contains(&holder),
            "{args:?}: {}",
            stderr(&refused)
        );
    }
    drop(client);
    wait_until_released(Kind::Redb, &path);
    let rows = json_lines(&ok(&["store", "list", file, "--json"]));
    assert_eq!(rows[0]["queued"], 1);
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.redb");
    let output = mooring(&["store", "list", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "not found");
    assert!(
        stderr(&output).contains("there is no store"),
        "{}",
        stderr(&output)
    );
    assert!(!missing.exists(), "a missing store must not be created");

    let text: PathBuf = dir.path().join("notes.txt");
    std::fs::write(&text, "not a store").unwrap();
    let output = mooring(&["store", "verify", text.to_str().unwrap()]);
    assert!(
        stderr(&output).contains("not a store file"),
        "{}",
        stderr(&output)
    );

    let usage = mooring(&["store", "show", text.to_str().unwrap()]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("--session"), "{}", stderr(&usage));
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "list",
        "show",
        "export",
        "verify",
        "drop-session",
        "move-session",
    ] {
        let help = ok(&["store", sub, "--help"]);
        assert!(help.contains("Usage: mooring store"), "{sub}: {help}");
    }
    assert!(ok(&["--help"]).contains("store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_queue_totals_against_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    let file = path.to_str().unwrap();
    offline_store(&path).await;

    // A totals record that is well formed, checksum and all, but counts wrong.
    let store = RedbStore::open(path.clone()).unwrap();
    let key = store.sessions().await.unwrap().remove(0);
    let wrong = layout::queue_totals_value(&key, 4, 32);
    let write = KvWrite::Put(layout::queue_totals_key(&key), wrong);
    store.backend().apply(&[write]).unwrap();
    drop(store);

    let verified = mooring(&["store", "verify", file]);
    assert_eq!(verified.status.code(), Some(4), "damaged");
    let report = stdout(&verified);
    assert!(
        report.contains("the queue totals say 4 messages of 32 bytes, the queue holds 3"),
        "{report}"
    );
}

/// The commands that only read leave the store's file as it was (no compaction, no table
/// created, no commit), and every JSON object says its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_commands_leave_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    let file = path.to_str().unwrap();
    offline_store(&path).await;
    let before = std::fs::read(&path).unwrap();
    let session = format!("gateway-7@{}", {
        let rows = json_lines(&ok(&["store", "list", file, "--json"]));
        rows[0]["session"]
            .as_str()
            .unwrap()
            .split_once('@')
            .unwrap()
            .1
            .to_owned()
    });
    for args in [
        vec!["store", "list", file, "--json"],
        vec!["store", "show", file, "--session", &session, "--json"],
        vec!["store", "export", file],
        vec!["store", "verify", file, "--json"],
    ] {
        let out = ok(&args);
        if args.contains(&"--json") {
            for line in json_lines(&out) {
                assert_eq!(line["schema"], 1, "{args:?}: {line}");
            }
        }
    }
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

/// Runs `commit_then_abort` on `path` in a process of its own: the store as a killed client
/// leaves it.
fn commit_then_abort_in_a_process(path: &Path) {
    let crashed = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "commit_then_abort", "--ignored", "--nocapture"])
        .env("MOORING_ABORT_AFTER_COMMIT", path)
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the helper aborts");
}

/// A redb file a killed client left must be recovered before it can be read: `list` says
/// so, brings it back to its last commit, and reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_a_killed_client_left_is_recovered_then_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.redb");
    commit_then_abort_in_a_process(&path);
    let read_only = RedbBackend::open_path_read_only(path.clone()).err();
    assert!(
        matches!(read_only, Some(StoreError::NeedsRecovery { .. })),
        "{read_only:?}"
    );
    let listed = mooring(&["store", "list", path.to_str().unwrap(), "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stderr(&listed).contains("not closed cleanly"),
        "{}",
        stderr(&listed)
    );
    let rows = json_lines(&stdout(&listed));
    assert_eq!(rows[0]["queued"], 1, "{rows:?}");
}

/// A SQLite file a killed client left is read with its write-ahead log as it is: the reading
/// commands find the committed message, and leave the database and its log unchanged (no
/// checkpoint folds the log into the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_a_killed_client_left_is_read_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.sqlite");
    let log = dir.path().join("killed.sqlite-wal");
    commit_then_abort_in_a_process(&path);
    let (database_before, log_before) =
        (std::fs::read(&path).unwrap(), std::fs::read(&log).unwrap());
    assert!(!log_before.is_empty(), "the commit is in the log");
    let file = path.to_str().unwrap();
    let rows = json_lines(&ok(&["store", "list", file, "--json"]));
    assert_eq!(rows[0]["queued"], 1, "{rows:?}");
    ok(&["store", "export", file]);
    ok(&["store", "verify", file, "--json"]);
    assert!(
        std::fs::read(&path).unwrap() == database_before,
        "the database file changed"
    );
    assert!(
        std::fs::read(&log).unwrap() == log_before,
        "the write-ahead log changed"
    );
}

/// Run by `a_store_a_killed_client_left_is_recovered_then_read` and
/// `a_sqlite_store_a_killed_client_left_is_read_and_left_as_it_was` in a process of its own:
/// commits one queued message to a redb store (a SQLite store for a `.sqlite` file), then
/// aborts without closing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper process of another test"]
async fn commit_then_abort() {
    let path = PathBuf::from(
        std::env::var_os("MOORING_ABORT_AFTER_COMMIT")
            .expect("run by a_store_a_killed_client_left_is_recovered_then_read"),
    );
    let store: Box<dyn SessionStore> = if path.extension().is_some_and(|e| e == "sqlite") {
        Box::new(SqliteStore::open(path).unwrap())
    } else {
        Box::new(RedbStore::open(path).unwrap())
    };
    let key = SessionKey::new("mqtt://h:1883", "killed");
    let mut batch = mooring::store::Batch::default();
    batch.push(mooring::store::StoreOp::PushQueue {
        seq: 0,
        message: mooring::store::QueuedPublish {
            qos: QoS::AtLeastOnce,
            packet: bytes::Bytes::from_static(&[0x30, 0x05, 0x00, 0x01, b't', 0x00, b'x']),
            expires_at_ms: None,
            accepted_at_ms: None,
        },
    });
    store.commit(&key, batch).await.unwrap();
    std::process::abort();
}

/// The reading commands take a PostgreSQL store by its connection string; the changing ones
/// refuse it (the owning client changes its sessions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_is_read_by_its_connection_string() {
    let postgres = integration::postgres::Postgres::start().unwrap();
    let connection = postgres.connection();
    let store = Arc::new(mooring::store::PostgresStore::open(connection.as_str()).unwrap());
    let (client, _m) = Client::builder()
        .server(format!("mqtt://127.0.0.1:{}", free_port().unwrap()))
        .client_id("pg-gateway")
        .store_arc(store.clone())
        .start()
        .await
        .unwrap();
    for i in 0..2 {
        drop(
            client
                .publish("t", format!("m{i}"), QoS::AtLeastOnce)
                .await
                .unwrap(),
        );
    }
    until("two queued", || client.stats().queued == 2).await;
    client.disconnect().await.unwrap();
    drop(client);
    store.close().await.unwrap();
    drop(store);

    let rows = json_lines(&ok(&["store", "list", &connection, "--json"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["client_id"], "pg-gateway");
    assert_eq!(rows[0]["queued"], 2);
    ok(&["store", "verify", &connection]);
    let refused = mooring(&[
        "store",
        "drop-session",
        &connection,
        "--session",
        "pg-gateway",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("on PostgreSQL"),
        "{}",
        stderr(&refused)
    );
}
