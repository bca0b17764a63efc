//! The commands that only read: `list`, `show`, `export`, `verify`. `show`, `export` and
//! `verify` stream the store's entries in key order, so a queue of millions costs no memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use mooring::packet::ProtocolVersion;
use mooring::store::layout::{self, Record};
use mooring::store::{OutboundRecord, QueueWindow, SessionKey, SessionScope};
use serde::Serialize;

use crate::Failure;
use crate::inspect::{MetaView, RecordView, age, decode_publish, timestamp};
use crate::store_file::{Access, StoreFile, find_session, session_name};
use crate::table;

/// A JSON object of the commands' output: `"schema"` first, then the object's own fields.
#[derive(Serialize)]
pub struct Versioned<'a, T: Serialize> {
    schema: u32,
    #[serde(flatten)]
    body: &'a T,
}

impl<'a, T: Serialize> Versioned<'a, T> {
    /// `body` with the schema version.
    pub fn of(body: &'a T) -> Self {
        Self {
            schema: crate::JSON_SCHEMA,
            body,
        }
    }
}

/// Standard output, buffered; a closed pipe (`| head`) ends the command quietly.
struct Out {
    writer: BufWriter<std::io::StdoutLock<'static>>,
    closed: bool,
}

impl Out {
    fn new() -> Self {
        Self {
            writer: BufWriter::new(std::io::stdout().lock()),
            closed: false,
        }
    }

    /// Writes a line; returns whether the reader is still there.
    fn line(&mut self, text: &str) -> bool {
        if !self.closed && writeln!(self.writer, "{text}").is_err() {
            self.closed = true;
        }
        !self.closed
    }

    fn json(&mut self, value: &impl Serialize) -> bool {
        match serde_json::to_string(&Versioned::of(value)) {
            Ok(text) => self.line(&text),
            Err(e) => self.line(&format!("{{\"error\":{:?}}}", e.to_string())),
        }
    }

    fn finish(mut self) {
        // A reader that went away wanted no more; nothing to report.
        let _ = self.writer.flush();
    }
}

/// One session in `list`.
#[derive(Debug, Serialize)]
struct SessionRow {
    session: String,
    scope: &'static str,
    scope_name: String,
    client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<MetaView>,
    queued: u64,
    queued_bytes: u64,
    /// When the oldest queued message was accepted, if its record says.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_queued_at: Option<String>,
    #[serde(skip)]
    oldest_queued_ms: Option<u64>,
    in_flight: usize,
    in_flight_bytes: usize,
    pubrel: usize,
    inbound: usize,
    subscriptions: usize,
}

async fn session_row(store: &StoreFile, key: &SessionKey) -> Result<SessionRow, Failure> {
    // The queue's summary comes from its totals record; of its messages only the head is read.
    let session = store
        .sessions()
        .resume(key, QueueWindow::new(1, 0))
        .await
        .map_err(|e| Failure::damaged(e.to_string()))?;
    let publishes: Vec<usize> = session
        .outbound
        .iter()
        .filter_map(|(_, r)| match r {
            OutboundRecord::Publish(packet) => Some(packet.len()),
            OutboundRecord::PubRel { .. } => None,
        })
        .collect();
    let oldest = session
        .queue
        .first()
        .and_then(|(_, message)| message.accepted_at_ms);
    let (scope, scope_name) = match key.scope() {
        SessionScope::Server(server) => ("server", server.clone()),
        SessionScope::Cluster(name) => ("cluster", name.clone()),
    };
    Ok(SessionRow {
        session: session_name(key),
        scope,
        scope_name,
        client_id: key.client_id().to_owned(),
        meta: session.meta.as_ref().map(MetaView::of),
        queued: session.queue_summary.messages,
        queued_bytes: session.queue_summary.bytes,
        oldest_queued_at: oldest.map(timestamp),
        oldest_queued_ms: oldest,
        in_flight: publishes.len(),
        in_flight_bytes: publishes.iter().sum(),
        pubrel: session.outbound.len() - publishes.len(),
        inbound: session.inbound.len(),
        subscriptions: session.subscriptions.len(),
    })
}

/// `mooring store list FILE`.
pub async fn list(path: &Path, json: bool) -> Result<(), Failure> {
    let store = StoreFile::open(path, Access::Read)?;
    let keys = store
        .sessions()
        .sessions()
        .await
        .map_err(|e| Failure::damaged(e.to_string()))?;
    let mut rows = Vec::with_capacity(keys.len());
    for key in &keys {
        rows.push(session_row(&store, key).await?);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = Out::new();
    if json {
        for row in &rows {
            out.json(row);
        }
    } else if rows.is_empty() {
        out.line(&format!("no sessions in {}", path.display()));
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let meta = r.meta.as_ref();
                vec![
                    r.session.clone(),
                    meta.map_or("-", |m| m.protocol).to_owned(),
                    r.queued.to_string(),
                    r.queued_bytes.to_string(),
                    r.oldest_queued_ms
                        .map_or_else(|| "-".to_owned(), |ms| age(ms, now)),
                    r.in_flight.to_string(),
                    r.pubrel.to_string(),
                    r.inbound.to_string(),
                    r.subscriptions.to_string(),
                    meta.and_then(|m| m.disconnected_at.clone().or(m.alive_until.clone()))
                        .unwrap_or_else(|| "-".to_owned()),
                    match meta {
                        Some(m) if m.session_expiry_interval == u32::MAX => "never".to_owned(),
                        Some(m) => m.expires_at.clone().unwrap_or_else(|| "-".to_owned()),
                        None => "-".to_owned(),
                    },
                ]
            })
            .collect();
        let text = table::render(
            &[
                "SESSION",
                "MQTT",
                ">QUEUED",
                ">QUEUED B",
                ">OLDEST QUEUED",
                ">IN FLIGHT",
                ">PUBREL",
                ">INBOUND",
                ">SUBS",
                "LAST ALIVE",
                "EXPIRES",
            ],
            &cells,
        );
        out.line(text.trim_end());
    }
    out.finish();
    Ok(())
}

/// One row of `show`, in fixed columns so that rows stream out as they are read; the topic and
/// the payload, of any length, come last.
#[allow(clippy::too_many_arguments)]
fn show_row(
    seq: &str,
    record: &str,
    id: &str,
    stage: &str,
    qos: &str,
    dup: &str,
    size: &str,
    topic: &str,
    payload: &str,
) -> String {
    format!("{seq:>10}  {record:<12}  {id:>9}  {stage:<28}  {qos:>3}  {dup:<3}  {size:>8}  {topic}  {payload}")
        .trim_end()
        .to_owned()
}

fn show_header() -> String {
    show_row(
        "SEQ",
        "RECORD",
        "PACKET ID",
        "STAGE",
        "QOS",
        "DUP",
        "SIZE",
        "TOPIC",
        "PAYLOAD",
    )
}

fn show_line(view: &RecordView) -> String {
    let number = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
    let payload = match &view.payload {
        Some(payload) => payload.data.clone(),
        None => view.preview.clone(),
    };
    show_row(
        &number(view.seq),
        view.record,
        &number(view.packet_id.map(u64::from)),
        view.stage.unwrap_or("-"),
        &number(view.qos.map(u64::from)),
        view.dup.map_or("-", |d| if d { "yes" } else { "no" }),
        &number(view.payload_bytes.map(|n| n as u64)),
        view.topic.as_deref().unwrap_or("-"),
        &payload,
    )
}

/// `mooring store show FILE --session KEY`. The records are read outside `runtime` (a
/// PostgreSQL backend blocks, which an async task must not).
pub fn show(
    runtime: &tokio::runtime::Runtime,
    path: &Path,
    wanted: &str,
    whole: bool,
    json: bool,
) -> Result<(), Failure> {
    let store = StoreFile::open(path, Access::Read)?;
    let key = runtime.block_on(find_session(&store, wanted))?;
    let name = session_name(&key);
    let prefix = layout::session_prefix(&key);
    let end = layout::session_upper_bound(&prefix);
    let mut out = Out::new();
    if !json {
        out.line(&format!("session {name}"));
    }
    let mut header_shown = json;
    let mut protocol = ProtocolVersion::V5;
    let mut damaged = Vec::new();
    let visited = store.visit(&prefix, Some(&end), &mut |k, v| {
        let view = layout::decode_record(k, v)
            .map_err(|e| e.to_string())
            .and_then(|(_, record)| {
                if let Record::Meta(meta) = &record {
                    protocol = meta.protocol;
                }
                RecordView::of(&name, protocol, &record, whole || json)
            });
        match view {
            Ok(view) if json => out.json(&view),
            // Metadata and totals are summed up in `list`; a person reads the flows here.
            Ok(view) if matches!(view.record, "meta" | "queue-totals") => {
                if let Some(meta) = &view.meta {
                    out.line(&format!(
                        "MQTT {}, session expiry {} s{}",
                        meta.protocol,
                        meta.session_expiry_interval,
                        meta.expires_at
                            .as_ref()
                            .map(|at| format!(", expires {at}"))
                            .unwrap_or_default()
                    ))
                } else {
                    true
                }
            }
            Ok(view) => {
                if !header_shown {
                    header_shown = true;
                    out.line(&show_header());
                }
                out.line(&show_line(&view))
            }
            Err(error) => {
                damaged.push(error.clone());
                out.line(&format!("DAMAGED: {error}"))
            }
        }
    });
    out.finish();
    visited.map_err(|e| Failure::damaged(e.to_string()))?;
    match damaged.len() {
        0 => Ok(()),
        n => Err(Failure::damaged(format!(
            "{n} record(s) of {name} cannot be read; `mooring store verify` lists them"
        ))),
    }
}

/// A damaged record in `export`.
#[derive(Debug, Serialize)]
struct DamagedLine {
    session: String,
    record: &'static str,
    error: String,
}

/// `mooring store export FILE`.
pub fn export(path: &Path) -> Result<(), Failure> {
    let store = StoreFile::open(path, Access::Read)?;
    let mut out = Out::new();
    let mut protocols = Protocols::default();
    let mut damaged = 0u64;
    let visited = store.visit(&[], None, &mut |k, v| match layout::decode_record(k, v) {
        Ok((key, record)) => {
            let name = session_name(&key);
            let protocol = protocols.of(&key, &record);
            match RecordView::of(&name, protocol, &record, true) {
                Ok(view) => out.json(&view),
                Err(error) => {
                    damaged += 1;
                    out.json(&DamagedLine {
                        session: name,
                        record: "damaged",
                        error,
                    })
                }
            }
        }
        Err(e) => {
            damaged += 1;
            let session = layout::session_of_key(k)
                .map(|key| session_name(&key))
                .unwrap_or_else(|_| "(unreadable)".to_owned());
            out.json(&DamagedLine {
                session,
                record: "damaged",
                error: e.to_string(),
            })
        }
    });
    out.finish();
    visited.map_err(|e| Failure::damaged(e.to_string()))?;
    match damaged {
        0 => Ok(()),
        n => Err(Failure::damaged(format!(
            "{n} record(s) cannot be read; their lines carry an error field"
        ))),
    }
}

/// The protocol of the session whose entries are being streamed: its metadata sorts first.
#[derive(Default)]
struct Protocols {
    session: Option<SessionKey>,
    protocol: ProtocolVersion,
}

impl Protocols {
    fn of(&mut self, key: &SessionKey, record: &Record) -> ProtocolVersion {
        if self.session.as_ref() != Some(key) {
            self.session = Some(key.clone());
            self.protocol = ProtocolVersion::V5;
        }
        if let Record::Meta(meta) = record {
            self.protocol = meta.protocol;
        }
        self.protocol
    }
}

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
struct Report {
    sessions: u64,
    records: u64,
    queued: u64,
    in_flight: u64,
    problems: Vec<String>,
    /// Problems beyond the first `MAX_PROBLEMS`, counted only.
    problems_not_listed: u64,
}

const MAX_PROBLEMS: usize = 1000;

impl Report {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        } else {
            self.problems_not_listed += 1;
        }
    }
}

/// The queue of the session being streamed, counted to check its totals record.
#[derive(Default)]
struct QueueCount {
    session: Option<SessionKey>,
    messages: u64,
    bytes: u64,
    /// A record of the session could not be read: its totals cannot be checked.
    unreadable: bool,
}

impl QueueCount {
    /// Starts counting anew when `key` is another session than the last one.
    fn follow(&mut self, key: &SessionKey) -> bool {
        let new = self.session.as_ref() != Some(key);
        if new {
            *self = Self {
                session: Some(key.clone()),
                ..Self::default()
            };
        }
        new
    }
}

/// `mooring store verify FILE`.
pub fn verify(path: &Path, json: bool) -> Result<(), Failure> {
    let store = StoreFile::open(path, Access::Read)?;
    let mut report = Report::default();
    let mut protocols = Protocols::default();
    let mut queue = QueueCount::default();
    let visited = store.visit(&[], None, &mut |k, v| {
        report.records += 1;
        let (key, record) = match layout::decode_record(k, v) {
            Ok(decoded) => decoded,
            Err(e) => {
                report.problem(e.to_string());
                if let Ok(key) = layout::session_of_key(k) {
                    if queue.follow(&key) {
                        report.sessions += 1;
                    }
                    queue.unreadable = true;
                }
                return true;
            }
        };
        if queue.follow(&key) {
            report.sessions += 1;
        }
        let protocol = protocols.of(&key, &record);
        let packet = match &record {
            Record::Outbound(_, OutboundRecord::Publish(packet)) => {
                report.in_flight += 1;
                Some(packet)
            }
            Record::Queued(_, message) => {
                report.queued += 1;
                queue.messages += 1;
                queue.bytes += message.packet.len() as u64;
                Some(&message.packet)
            }
            Record::QueueTotals(messages, bytes) => {
                if !queue.unreadable && (*messages, *bytes) != (queue.messages, queue.bytes) {
                    report.problem(format!(
                        "session {}: the queue totals say {messages} messages of {bytes} bytes, \
                         the queue holds {} of {} bytes",
                        session_name(&key),
                        queue.messages,
                        queue.bytes
                    ));
                }
                None
            }
            _ => None,
        };
        if let Some(packet) = packet
            && let Err(e) = decode_publish(protocol, packet)
        {
            let seq = match &record {
                Record::Outbound(seq, _) | Record::Queued(seq, _) => *seq,
                _ => 0,
            };
            report.problem(format!(
                "session {}: record #{seq}: {e}",
                session_name(&key)
            ));
        }
        true
    });
    if let Err(e) = visited {
        report.problem(format!("the store stopped reading: {e}"));
    }
    let mut out = Out::new();
    if json {
        out.json(&report);
    } else {
        for problem in &report.problems {
            out.line(&format!("DAMAGED: {problem}"));
        }
        if report.problems_not_listed > 0 {
            out.line(&format!(
                "… and {} more problems",
                report.problems_not_listed
            ));
        }
        out.line(&format!(
            "{} records in {} session(s) ({} queued, {} in flight), format version {}: {}",
            report.records,
            report.sessions,
            report.queued,
            report.in_flight,
            layout::FORMAT_VERSION,
            if report.problems.is_empty() {
                "all readable".to_owned()
            } else {
                format!(
                    "{} damaged",
                    report.problems.len() as u64 + report.problems_not_listed
                )
            }
        ));
    }
    out.finish();
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::damaged(format!(
            "{} problem(s) in {}",
            report.problems.len() as u64 + report.problems_not_listed,
            path.display()
        )))
    }
}
