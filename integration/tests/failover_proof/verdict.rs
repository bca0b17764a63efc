//! What the proof reads at the end: the ledgers of each pair and the broker's log.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use integration::ledger;

/// What the ledgers say about messages handed to more than one owner's application.
pub struct HandedOver {
    /// Deliveries to an owner's application after a later owner had started: a frozen owner
    /// that woke must hand out nothing (the client holds its inbox back once the lease lapsed).
    pub late: usize,
    /// Numbers consumed by two owners, none of those deliveries late: the first had it before
    /// the takeover and stopped before its ack returned (the `redelivered` ledger, checked
    /// apart, holds that no ack had returned), so the server sent it to the next owner.
    pub before_takeover: usize,
    /// The late deliveries and every owner's start, for the failure message.
    pub traces: Vec<String>,
}

/// Reads every delivery and every owner's start from a pair's ledgers.
pub fn handed_over(dir: &Path, consumed: &[String]) -> HandedOver {
    // `start <ms>` per incarnation, in order.
    let starts: Vec<u64> = ledger(dir, "incarnation")
        .iter()
        .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
        .collect();
    let mut late = Vec::new();
    for line in ledger(dir, "deliveries") {
        // `<n> delivered m<id> dup=<dup> run <incarnation> at <ms>`
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(run), Some(at)) = (
            fields.get(5).and_then(|r| r.parse::<usize>().ok()),
            fields.get(7).and_then(|t| t.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if starts.iter().skip(run + 1).any(|&start| start <= at) {
            late.push(line.clone());
        }
    }
    let mut seen = HashSet::new();
    let twice: HashSet<&String> = consumed.iter().filter(|n| !seen.insert(*n)).collect();
    let late_numbers: HashSet<&str> = late.iter().filter_map(|l| l.split(' ').next()).collect();
    let before_takeover = twice
        .iter()
        .filter(|n| !late_numbers.contains(n.as_str()))
        .count();
    let mut traces = late.clone();
    traces.extend(
        starts
            .iter()
            .enumerate()
            .map(|(run, at)| format!("run {run} started at {at}")),
    );
    HandedOver {
        late: late.len(),
        before_takeover,
        traces,
    }
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Whether a line of mosquitto's log (`log_type all`) says it received a packet from
/// `client_id`: `Received PUBLISH from <id> (d0, q2, …)`, `Received PINGREQ from <id>`.
fn received_from(line: &str, client_id: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(4)
        .any(|w| w[0] == "Received" && w[2] == "from" && w[3] == client_id)
}

/// Whether a line says a client connected as `client_id`: `New client connected from
/// 127.0.0.1:<port> as <id> (p5, c0, k5).`
fn connected_as(line: &str, client_id: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| w[0] == "as" && (w[1] == client_id || w[1].strip_suffix('.') == Some(client_id)))
        && line.contains("New client connected")
}

/// Checks the broker's log from the moment the old owner's lease had lapsed (`since`: the
/// standby owned the session) up to the standby's CONNECT: the broker received nothing from
/// `client_id` in that time, so nothing from the old owner, and the standby did connect.
/// Returns the offending lines.
pub fn broker_heard_the_old_owner(since: &str, client_id: &str) -> Result<(), String> {
    let mut heard = Vec::new();
    for line in since.lines() {
        if connected_as(line, client_id) {
            return if heard.is_empty() {
                Ok(())
            } else {
                Err(heard.join("\n"))
            };
        }
        if received_from(line, client_id) {
            heard.push(line.to_owned());
        }
    }
    Err(format!(
        "the standby's CONNECT as {client_id} is not in the broker's log{}{}",
        if heard.is_empty() { "" } else { "; heard:\n" },
        heard.join("\n")
    ))
}

#[test]
fn the_broker_log_check_reads_mosquittos_lines() {
    let log = "1796566447: Received PINGREQ from proof-gateway-10\n\
               1796566447: Received PUBLISH from proof-gateway-1 (d0, q2, r0, m4, 'p', ... (9 bytes))\n\
               1796566448: New client connected from 127.0.0.1:40000 as proof-gateway-1 (p5, c0, k5).\n\
               1796566449: Received PINGREQ from proof-gateway-1\n";
    let err = broker_heard_the_old_owner(log, "proof-gateway-1").unwrap_err();
    assert!(err.contains("m4") && !err.contains("gateway-10"), "{err}");
    let after_publish = log.split_once("bytes))\n").unwrap().1;
    assert_eq!(
        broker_heard_the_old_owner(after_publish, "proof-gateway-1"),
        Ok(())
    );
    assert!(broker_heard_the_old_owner("", "proof-gateway-1").is_err());
}
