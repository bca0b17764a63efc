//! `mooring doctor URL`: what a live broker says of itself, and which settings of a client
//! configuration it will refuse or change.
//!
//! It connects once as `mooring-doctor-<pid>` with a clean start, reads the CONNACK, probes
//! with one subscription to a filter of its own (what QoS the broker grants, whether it
//! takes a wildcard), and leaves nothing behind: the subscription goes with the session,
//! which the DISCONNECT ends (Session Expiry 0). With `--config`, the connection is made as
//! that client would make it (TLS, credentials, proxies, its keep alive and session expiry)
//! and its settings are compared with what the broker said.

use std::path::Path;
use std::time::Duration;

use mooring::client::{BrokerProfile, ClientBuilder, ClientConfig, ClientError, ClientEvent};
use mooring::packet::ConnAckProperties;
use mooring::store::MemoryStore;
use mooring::{Backoff, QoS};
use serde::Serialize;

use crate::{Class, Failure, JSON_SCHEMA};

/// How long the broker has to answer.
const WAIT: Duration = Duration::from_secs(10);

/// What the broker said, with the specification's defaults where it said nothing.
#[derive(Debug, Serialize)]
struct Report {
    schema: u32,
    server: String,
    maximum_qos: u8,
    retain_available: bool,
    receive_maximum: u16,
    /// `None`: no limit but the protocol's.
    maximum_packet_size: Option<u32>,
    topic_alias_maximum: u16,
    wildcard_subscription_available: bool,
    subscription_identifiers_available: bool,
    shared_subscription_available: bool,
    /// The keep alive the broker imposes, if it does.
    server_keep_alive: Option<u16>,
    /// The Session Expiry Interval the broker granted, if it changed the one asked for.
    session_expiry_granted: Option<u32>,
    /// What the probe subscription was granted at QoS 2 (`None`: refused).
    granted_qos: Option<u8>,
    /// Why the probe subscription was refused.
    probe_refused: Option<String>,
    /// The broker profile checked against (`aws-iot-core`, ...), if any.
    profile: Option<&'static str>,
    /// Where the profile came from: `--profile`, `the configuration` or `the address`.
    profile_from: Option<&'static str>,
    /// Where the CONNACK says otherwise than the profile.
    profile_differences: Vec<String>,
    /// Settings of the configuration the broker will refuse or change.
    findings: Vec<String>,
}

fn report_of(server: &str, p: &ConnAckProperties) -> Report {
    Report {
        schema: JSON_SCHEMA,
        server: server.to_owned(),
        maximum_qos: p.maximum_qos.map_or(2, |q| q as u8),
        retain_available: p.retain_available.unwrap_or(true),
        receive_maximum: p.receive_maximum.unwrap_or(u16::MAX),
        maximum_packet_size: p.maximum_packet_size,
        topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
        wildcard_subscription_available: p.wildcard_subscription_available.unwrap_or(true),
        subscription_identifiers_available: p.subscription_identifiers_available.unwrap_or(true),
        shared_subscription_available: p.shared_subscription_available.unwrap_or(true),
        server_keep_alive: p.server_keep_alive,
        session_expiry_granted: p.session_expiry_interval,
        granted_qos: None,
        probe_refused: None,
        profile: None,
        profile_from: None,
        profile_differences: Vec::new(),
        findings: Vec::new(),
    }
}

/// Where what the broker said differs from what `profile` documents.
fn differences(report: &Report, profile: BrokerProfile) -> Vec<String> {
    let limits = profile.limits();
    let publish = limits.publish;
    let mut found = Vec::new();
    let name = profile.title();
    let profile_qos = publish.maximum_qos as u8;
    if report.maximum_qos != profile_qos {
        found.push(format!(
            "Maximum QoS: the broker says {}, {name} takes {profile_qos}",
            report.maximum_qos
        ));
    }
    if report.retain_available != publish.retain_available {
        let says = |b: bool| if b { "keeps" } else { "keeps no" };
        found.push(format!(
            "retained messages: the broker {} them, {name} {} them",
            says(report.retain_available),
            says(publish.retain_available)
        ));
    }
    let profile_packet = publish
        .maximum_packet_bytes
        .or(publish.maximum_payload_bytes);
    let broker_packet = report.maximum_packet_size.map(|s| s as usize);
    if let (Some(profile), broker) = (profile_packet, broker_packet)
        && broker.is_none_or(|b| b.abs_diff(profile) > profile / 8)
    {
        found.push(format!(
            "Maximum Packet Size: the broker says {}, {name} takes about {profile} bytes",
            broker.map_or("no limit".to_owned(), |b| format!("{b} bytes"))
        ));
    }
    if let (Some(max), Some(server)) = (limits.maximum_keep_alive_secs, report.server_keep_alive)
        && server > max
    {
        found.push(format!(
            "Server Keep Alive: the broker says {server} s, {name} takes {max} s at most"
        ));
    }
    found
}

/// The configuration's settings the broker will refuse or change.
fn findings(report: &Report, config: &ClientConfig) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(will) = &config.will {
        if will.qos > report.maximum_qos {
            found.push(format!(
                "will.qos = {}: the broker's Maximum QoS is {}, it refuses the connection",
                will.qos, report.maximum_qos
            ));
        }
        if will.retain && !report.retain_available {
            found.push(
                "will.retain = true: the broker has no retained messages, it refuses the \
                 connection"
                    .to_owned(),
            );
        }
    }
    if report.maximum_qos < 2 {
        found.push(format!(
            "the broker's Maximum QoS is {}: publishes above it are refused by the client \
             (publish at QoS {} at most)",
            report.maximum_qos, report.maximum_qos
        ));
        if report.maximum_qos == 1 && config.key_publishes.is_none() {
            found.push(
                "key_publishes is not set: QoS 1 may deliver a message twice; with \
                 key_publishes here and [deduplicate] at the consumer each message reaches it \
                 once (docs/effectively-once.md)"
                    .to_owned(),
            );
        }
    }
    if let Some(server) = report.server_keep_alive {
        let asked = config.keep_alive.as_secs();
        if u64::from(server) != asked {
            found.push(format!(
                "keep_alive = {asked} s: the broker sets {server} s instead"
            ));
        }
    }
    if let Some(granted) = report.session_expiry_granted
        && granted < config.session_expiry
    {
        found.push(format!(
            "session_expiry = {} s: the broker keeps a session {granted} s at most",
            config.session_expiry
        ));
    }
    if config.topic_aliases && report.topic_alias_maximum == 0 {
        found.push("topic_aliases = true: the broker accepts no Topic Alias".to_owned());
    }
    if let Some(size) = report.maximum_packet_size {
        found.push(format!(
            "the broker takes packets of {size} bytes at most: a larger publish is refused \
             by the client"
        ));
    }
    found
}

fn text(report: &Report) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!("broker {}\n", report.server);
    let mut row = |name: &str, value: String| out.push_str(&format!("  {name:<36} {value}\n"));
    row("Maximum QoS", report.maximum_qos.to_string());
    row("Retain Available", yes(report.retain_available).to_owned());
    row("Receive Maximum", report.receive_maximum.to_string());
    row(
        "Maximum Packet Size",
        report
            .maximum_packet_size
            .map_or("no limit".to_owned(), |s| format!("{s} bytes")),
    );
    row(
        "Topic Alias Maximum",
        report.topic_alias_maximum.to_string(),
    );
    row(
        "Wildcard Subscription Available",
        yes(report.wildcard_subscription_available).to_owned(),
    );
    row(
        "Subscription Identifiers Available",
        yes(report.subscription_identifiers_available).to_owned(),
    );
    row(
        "Shared Subscription Available",
        yes(report.shared_subscription_available).to_owned(),
    );
    row(
        "Server Keep Alive",
        report
            .server_keep_alive
            .map_or("as the client asks".to_owned(), |s| format!("{s} s")),
    );
    row(
        "Session Expiry granted",
        report
            .session_expiry_granted
            .map_or("as the client asks".to_owned(), |s| format!("{s} s")),
    );
    row(
        "probe: QoS 2 wildcard subscription",
        match (report.granted_qos, &report.probe_refused) {
            (Some(q), _) => format!("granted at QoS {q}"),
            (None, Some(why)) => format!("refused: {why}"),
            (None, None) => "not made".to_owned(),
        },
    );
    match (report.profile, report.profile_from) {
        (Some(profile), Some(from)) if report.profile_differences.is_empty() => {
            out.push_str(&format!(
                "profile {profile} (from {from}): the CONNACK agrees with it\n"
            ));
        }
        (Some(profile), Some(from)) => {
            out.push_str(&format!(
                "profile {profile} (from {from}): the CONNACK differs\n"
            ));
            for difference in &report.profile_differences {
                out.push_str(&format!("  - {difference}\n"));
            }
        }
        _ => out.push_str(
            "profile: none (the address names no cloud broker; --profile NAME checks one)\n",
        ),
    }
    if !report.findings.is_empty() {
        out.push_str("what the broker will refuse or change:\n");
        for finding in &report.findings {
            out.push_str(&format!("  - {finding}\n"));
        }
    }
    out
}

async fn examine(
    url: &str,
    config: Option<ClientConfig>,
    profile: Option<(BrokerProfile, &'static str)>,
) -> Result<Report, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::new(format!("{url}: {e}"));
    let mut builder = match &config {
        Some(config) => {
            let mut config = config.clone();
            config.servers = vec![url.to_owned()];
            config.store = None;
            // No Will: a broker that refuses it would say nothing else, and a Will is a side
            // effect; it is checked against the CONNACK instead. No profile: what it refuses
            // is a finding, not a reason not to ask the broker.
            config.will = None;
            config.broker_profile = None;
            ClientBuilder::from_config(&config).map_err(|e| {
                Failure::new(format!("the configuration: {e}")).of(Class::InvalidConfig)
            })?
        }
        None => ClientBuilder::default().server(url),
    };
    builder = builder
        .client_id(format!("mooring-doctor-{}", std::process::id()))
        .clean_start(true)
        .store(MemoryStore::default())
        .reconnect(Backoff::default().with_max_attempts(Some(1)));
    let mut events = builder.events();
    let (client, _messages) = tokio::time::timeout(WAIT, builder.connect())
        .await
        .map_err(|_| failed(&format!("no answer within {WAIT:?}")))?
        .map_err(|e| failed(&e))?;
    let mut report = loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(ClientEvent::Connected { properties, .. })) => {
                break report_of(url, &properties);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(failed(&"no CONNACK seen")),
        }
    };
    let filter = format!("mooring-doctor/{}/#", std::process::id());
    match tokio::time::timeout(WAIT, client.subscribe(filter, QoS::ExactlyOnce)).await {
        Ok(Ok(granted)) => report.granted_qos = Some(granted as u8),
        Ok(Err(e)) => report.probe_refused = Some(e.to_string()),
        Err(_) => report.probe_refused = Some(format!("no answer within {WAIT:?}")),
    }
    // The session ends with the connection: nothing stays at the broker.
    let _ = tokio::time::timeout(
        WAIT,
        client.disconnect_with(mooring::ReasonCode::Success, Some(Duration::ZERO)),
    )
    .await;
    if let Some((profile, from)) = profile {
        report.profile = Some(profile.name());
        report.profile_from = Some(from);
        report.profile_differences = differences(&report, profile);
    }
    if let Some(config) = &config {
        report.findings = findings(&report, config);
        let mut config = config.clone();
        config.servers = vec![url.to_owned()];
        config.store = None;
        config.broker_profile = profile.map(|(p, _)| p).or(config.broker_profile);
        if let Err(ClientError::BrokerProfile {
            setting,
            why,
            profile,
        }) = ClientBuilder::from_config(&config).and_then(|b| b.validate())
        {
            report.findings.push(format!("{setting}: {profile} {why}"));
        }
    }
    Ok(report)
}

/// The profile to check against: `--profile`, else the configuration's, else the one the
/// address names.
fn profile_for(
    url: &str,
    named: Option<&str>,
    config: Option<&ClientConfig>,
) -> Result<Option<(BrokerProfile, &'static str)>, Failure> {
    if let Some(name) = named {
        let profile = name.parse::<BrokerProfile>().map_err(Failure::new)?;
        return Ok(Some((profile, "--profile")));
    }
    if let Some(profile) = config.and_then(|c| c.broker_profile) {
        return Ok(Some((profile, "the configuration")));
    }
    let host = url
        .parse::<mooring::client::ServerUrl>()
        .map(|u| u.host().to_owned())
        .unwrap_or_default();
    Ok(BrokerProfile::for_host(&host).map(|p| (p, "the address")))
}

/// Connects to `url`, prints what the broker said and, with `config`, what of it the broker
/// will refuse or change.
pub fn doctor(
    url: &str,
    config: Option<&Path>,
    profile: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let config = config
        .map(|file| {
            ClientConfig::load(file)
                .map_err(|e| Failure::new(e.to_string()).of(Class::InvalidConfig))
        })
        .transpose()?;
    let profile = profile_for(url, profile, config.as_ref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start: {e}")))?;
    let report = runtime.block_on(examine(url, config, profile))?;
    if json {
        let line = serde_json::to_string(&report)
            .map_err(|e| Failure::new(format!("cannot print the report: {e}")))?;
        println!("{line}");
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}
