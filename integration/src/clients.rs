//! What the tests against real brokers share: a client builder for a test, and waits for the
//! next message or event that fail the test when it does not come in time.

// Helpers of tests: a wait that fails is the test failing.
#![allow(clippy::panic)]

use std::time::Duration;

use mooring::client::{ClientBuilder, Events, Messages};
use mooring::store::MemoryStore;
use mooring::{Client, ClientEvent};

/// How long a test waits for a message or an event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A builder for client `id` of `url`, in memory, reconnecting fast.
pub fn client(url: &str, id: &str) -> ClientBuilder {
    Client::builder()
        .server(url)
        .client_id(id)
        .store(MemoryStore::default())
        .reconnect(crate::fast_backoff())
}

/// The next message; panics when none comes within [`WAIT`] or the client stopped.
pub async fn recv(messages: &mut Messages) -> mooring::Message {
    match tokio::time::timeout(WAIT, messages.recv()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("the client stopped"),
        Err(_) => panic!("no message within {WAIT:?}"),
    }
}

/// The next event `want` accepts; panics when none comes within [`WAIT`].
pub async fn event(events: &mut Events, want: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if want(&e) {
                return Some(e);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the events ended"),
        Err(_) => panic!("the event did not come within {WAIT:?}"),
    }
}

/// Publishes the numbers below `count` (each its own payload) at QoS 2 on `prefix/0` to
/// `prefix/3`, `pace` apart, then waits for every delivery; panics on any failure.
pub fn publish_numbered(
    publisher: &mooring::Client,
    prefix: &str,
    count: usize,
    pace: Duration,
) -> tokio::task::JoinHandle<()> {
    let (publisher, prefix) = (publisher.clone(), prefix.to_owned());
    tokio::spawn(async move {
        let mut deliveries = Vec::with_capacity(count);
        for i in 0..count {
            let topic = format!("{prefix}/{}", i % 4);
            match publisher
                .publish(topic, i.to_string(), mooring::QoS::ExactlyOnce)
                .await
            {
                Ok(delivery) => deliveries.push(delivery),
                Err(e) => panic!("publish {i}: {e}"),
            }
            tokio::time::sleep(pace).await;
        }
        for (i, delivery) in deliveries.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(30), delivery).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("delivery {i}: {e}"),
                Err(_) => panic!("delivery {i} not acknowledged within 30 s"),
            }
        }
    })
}

/// Receives numbered messages (see [`publish_numbered`]) into `seen` (how often each number
/// came) until `distinct` numbers have come.
pub async fn receive_numbered(
    messages: &mut Messages,
    seen: &mut std::collections::BTreeMap<usize, usize>,
    distinct: usize,
) {
    while seen.len() < distinct {
        let message = recv(messages).await;
        let text = String::from_utf8_lossy(message.payload()).into_owned();
        match text.parse() {
            Ok(n) => *seen.entry(n).or_default() += 1,
            Err(_) => panic!("not a numbered message: {text:?}"),
        }
    }
}

/// Every number below `count` came exactly once, and nothing more comes within half a
/// second (a late duplicate).
pub async fn assert_each_once(
    messages: &mut Messages,
    seen: &std::collections::BTreeMap<usize, usize>,
    count: usize,
) {
    assert!(
        tokio::time::timeout(Duration::from_millis(500), messages.recv())
            .await
            .is_err(),
        "a message came after all {count}: a duplicate"
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(seen.len(), count, "distinct numbers received");
}
