//! `bench receive [COUNT] [RUNS]`: the receiving side. A subscriber's session is made and left
//! offline, another client publishes COUNT messages of 64 B to it (mosquitto queues them), and
//! then the subscriber reconnects: the rate is from its connect to the last message handed to
//! the application (with manual ack: to the last ack returned). QoS 0/1/2, automatic and manual
//! ack; rumqttc, Mooring in memory and Mooring on redb, interleaved, RUNS times (default 3);
//! medians, spreads and ratios of medians. The broker's window is 100
//! (`max_inflight_messages`).
//!
//! With manual ack the application acks every message as it arrives and keeps the acks
//! outstanding side by side (Mooring's `ack` returns once the ack is durable; rumqttc's once it
//! is queued for its event loop). With automatic ack it reads one message at a time (Mooring
//! acks each when the next is asked for, at QoS 2 durably before handing the next over);
//! "batch" reads with `recv_many` up to 256 at a time (one commit per batch; rumqttc, which
//! acks on arrival, reads as with automatic ack).
//!
//! Each row also gives the receiving process's CPU time per message (user + system, all its
//! threads, from its connect to the last message).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use integration::mosquitto::Mosquitto;
use mooring::Client;
use mooring::store::MemoryStore;

use super::{CONTENDERS, Error, qos, summarize};

const INFLIGHT: u16 = 100;

const PAYLOAD: usize = 64;

/// How the application acknowledges.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acking {
    Automatic,
    Manual,
    /// Automatic, reading batches with `recv_many`.
    Batch,
}

/// The largest batch `recv_many` takes.
const BATCH: usize = 256;

impl Acking {
    pub(crate) fn parse(word: &str) -> Result<Self, Error> {
        match word {
            "automatic" => Ok(Self::Automatic),
            "manual" => Ok(Self::Manual),
            "batch" => Ok(Self::Batch),
            other => Err(format!("unknown acking {other:?}").into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Manual => "manual",
            Self::Batch => "batch",
        }
    }
}

/// Publishes `count` messages at `qos` to `topic` and waits until the broker has taken each.
async fn preload(url: &str, topic: &str, q: u8, count: usize) -> Result<(), Error> {
    let (client, _inbox) = Client::builder()
        .server(url)
        .client_id(format!("bench-preload-{}", std::process::id()))
        .store(MemoryStore::default())
        .queue_limit(count + 1, mooring::QueuePolicy::Wait)
        .connect()
        .await?;
    let payload = bytes::Bytes::from(vec![0x5Au8; PAYLOAD]);
    let mut deliveries = FuturesOrdered::new();
    for _ in 0..count {
        deliveries.push_back(client.publish(topic, payload.clone(), qos(q)).await?);
        if deliveries.len() >= 1024
            && let Some(done) = deliveries.next().await
        {
            done?;
        }
    }
    while let Some(done) = deliveries.next().await {
        done?;
    }
    client.disconnect().await?;
    Ok(())
}

/// What a receiving row measured: msg/s and the receiver's CPU µs per message.
pub(crate) struct Received {
    pub(crate) rate: f64,
    pub(crate) cpu_us: f64,
}

impl Received {
    /// From `count` messages received since `start`, when this process had used `cpu_before`
    /// seconds of CPU.
    fn since(start: Instant, cpu_before: f64, count: usize) -> Self {
        let cpu = integration::process_cpu_seconds("self") - cpu_before;
        Received {
            rate: count as f64 / start.elapsed().as_secs_f64(),
            cpu_us: cpu * 1e6 / count as f64,
        }
    }
}

/// `bench recv mooring STORE URL QOS ACKING COUNT` (ACKING: automatic, manual, batch): prints `RECV <msg/s> <CPU µs/msg>`.
pub(crate) async fn mooring_receive(
    store_kind: &str,
    url: &str,
    q: u8,
    acking: Acking,
    count: usize,
) -> Result<Received, Error> {
    let manual = acking == Acking::Manual;
    let dir = tempfile::tempdir()?;
    let store = super::store_in(store_kind, dir.path())?;
    let id = format!("bench-recv-{}", std::process::id());
    let topic = format!("bench/recv/{}", std::process::id());
    let builder = || {
        Client::builder()
            .server(url)
            .client_id(&id)
            .store_arc(store.clone())
            .session_expiry(Duration::from_secs(3600))
            .manual_ack(manual)
    };
    let (client, _inbox) = builder().clean_start(true).connect().await?;
    client.subscribe(&topic, qos(q)).await?;
    client.disconnect().await?;
    drop(client);
    preload(url, &topic, q, count).await?;

    let cpu_before = integration::process_cpu_seconds("self");
    let start = Instant::now();
    let (client, mut inbox) = builder().clean_start(false).connect().await?;
    let mut acks = FuturesUnordered::new();
    let mut received = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while acking == Acking::Batch && received < count {
        batch.clear();
        match inbox.recv_many(&mut batch, BATCH).await {
            0 => return Err("the client stopped".into()),
            taken => received += taken,
        }
    }
    while received < count {
        tokio::select! {
            message = inbox.recv() => {
                let message = message.ok_or("the client stopped")?;
                received += 1;
                if message.needs_ack() {
                    acks.push(message.ack());
                }
            }
            Some(acked) = acks.next(), if !acks.is_empty() => acked?,
        }
    }
    while let Some(acked) = acks.next().await {
        acked?;
    }
    let received = Received::since(start, cpu_before, count);
    client.disconnect().await?;
    Ok(received)
}

/// `bench recv rumqttc - URL QOS ACKING COUNT`: the same through rumqttc.
pub(crate) async fn rumqttc_receive(
    url: &str,
    q: u8,
    acking: Acking,
    count: usize,
) -> Result<Received, Error> {
    let manual = acking == Acking::Manual;
    use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
    let port: u16 = url.rsplit(':').next().ok_or("port")?.parse()?;
    let id = format!("rumqttc-recv-{}", std::process::id());
    let topic = format!("bench/recv/{}", std::process::id());
    let options = |clean: bool| {
        let mut options = MqttOptions::new(id.clone(), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_clean_start(clean);
        options.set_session_expiry_interval(Some(3600));
        options.set_manual_acks(manual);
        options
    };
    let rq = super::rumqttc_qos(q);
    {
        let (client, mut eventloop) = AsyncClient::new(options(true), 1024);
        client.subscribe(topic.clone(), rq).await?;
        loop {
            if let Event::Incoming(Incoming::SubAck(_)) = eventloop.poll().await? {
                break;
            }
        }
        client.disconnect().await?;
        while eventloop.poll().await.is_ok() {}
    }
    preload(url, &topic, q, count).await?;

    let cpu_before = integration::process_cpu_seconds("self");
    let start = Instant::now();
    let (client, mut eventloop) = AsyncClient::new(options(false), 1024);
    // The obvious manual-ack application: a task of its own acks what the event loop hands it.
    let (to_ack, mut acking) = tokio::sync::mpsc::unbounded_channel();
    let acker = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(publish) = acking.recv().await {
                client.ack(&publish).await?;
            }
            Ok::<(), Error>(())
        })
    };
    let mut received = 0;
    while received < count {
        if let Event::Incoming(Incoming::Publish(publish)) = eventloop.poll().await? {
            received += 1;
            if manual {
                to_ack.send(publish)?;
            }
        }
    }
    drop(to_ack);
    // The acks queued last reach the event loop only while it is polled.
    while !acker.is_finished() {
        tokio::select! {
            polled = eventloop.poll() => { polled?; }
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    acker.await??;
    Ok(Received::since(start, cpu_before, count))
}

pub(crate) fn run(count: usize, runs: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let fsync = integration::fdatasync_rate(dir.path(), 2.0, false)?;
    println!(
        "Machine: {}; receiving {count} messages of {PAYLOAD} B queued by mosquitto \
         (max_inflight_messages {INFLIGHT}), {runs} runs interleaved; raw fdatasync (4 KiB \
         overwrite): {fsync:.0}/s\n",
        super::machine()
    );
    println!(
        "| QoS | ack | rumqttc msg/s | memory msg/s | redb msg/s | memory ÷ rumqttc | redb ÷ memory \
         | redb ÷ fdatasync rate | receiver CPU µs/msg (rumqttc / memory / redb) | \
         spreads (rumqttc / memory / redb) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut config = super::broker_config(INFLIGHT);
    config.quiet_log = true;
    // QoS 0 messages wait for an offline session too.
    config.extra.push("queue_qos0_messages true".into());
    let broker = Mosquitto::with_config(&config)?;
    for (q, acking) in [
        (0u8, Acking::Automatic),
        (1, Acking::Automatic),
        (1, Acking::Batch),
        (1, Acking::Manual),
        (2, Acking::Automatic),
        (2, Acking::Batch),
        (2, Acking::Manual),
    ] {
        let mut rates: Vec<Vec<f64>> = CONTENDERS.iter().map(|_| Vec::new()).collect();
        let mut cpu: Vec<Vec<f64>> = CONTENDERS.iter().map(|_| Vec::new()).collect();
        for _ in 0..runs {
            for (((lib, store), out), spent) in
                CONTENDERS.iter().zip(rates.iter_mut()).zip(cpu.iter_mut())
            {
                let line = super::child(&[
                    "recv".into(),
                    (*lib).into(),
                    (*store).into(),
                    broker.url(),
                    q.to_string(),
                    acking.name().into(),
                    count.to_string(),
                ])?;
                let fields: Vec<f64> = line
                    .strip_prefix("RECV ")
                    .ok_or_else(|| format!("bad recv output {line:?}"))?
                    .split(' ')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                let [rate, cpu_us] = fields.as_slice() else {
                    return Err(format!("bad recv output {line:?}").into());
                };
                out.push(*rate);
                spent.push(*cpu_us);
            }
        }
        let c = summarize(&[], &rates)?;
        let cpu: Vec<String> = cpu
            .iter_mut()
            .map(|spent| format!("{:.1}", super::median(spent)))
            .collect();
        println!(
            "| {q} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} |",
            acking.name(),
            c.peer,
            c.memory,
            c.redb,
            c.memory / c.peer,
            c.redb / c.memory,
            c.redb / fsync,
            cpu.join(" / "),
            c.spreads
        );
    }
    Ok(())
}
