//! The proofs' independent subscriber: a session of its own, straight to the broker, keeping
//! the payload of every message it receives as a line, in arrival order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use mooring::store::MemoryStore;
use mooring::{Client, ClientError, QoS};

/// A subscriber collecting what arrives, for a proof to check at the end.
pub struct Arrivals {
    client: Client,
    lines: Arc<Mutex<Vec<String>>>,
    collector: tokio::task::JoinHandle<()>,
}

impl Arrivals {
    /// Connects to `url` as `client_id` (an in-memory session, fast reconnects) and subscribes
    /// to `filter` at `qos`.
    pub async fn subscribe(
        url: &str,
        client_id: &str,
        filter: &str,
        qos: QoS,
    ) -> Result<Self, ClientError> {
        let (client, mut inbox) = Client::builder()
            .server(url)
            .client_id(client_id)
            .store(MemoryStore::default())
            .reconnect(crate::fast_backoff())
            .connect()
            .await?;
        client.subscribe(filter, qos).await?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collector = tokio::spawn({
            let lines = lines.clone();
            async move {
                while let Some(m) = inbox.recv().await {
                    let line = String::from_utf8_lossy(m.payload()).into_owned();
                    lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            }
        });
        Ok(Self {
            client,
            lines,
            collector,
        })
    }

    /// Whether every line of `expected` has arrived.
    pub fn include(&self, expected: &HashSet<String>) -> bool {
        includes_all(
            &self.lines.lock().unwrap_or_else(PoisonError::into_inner),
            expected,
        )
    }

    /// Disconnects, and returns every line that arrived.
    pub async fn finish(self) -> Result<Vec<String>, ClientError> {
        self.client.disconnect().await?;
        self.collector.abort();
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(lines.clone())
    }
}

/// Whether every line of `expected` is among `lines`: the proofs' subscribers all ask it.
pub(crate) fn includes_all(lines: &[String], expected: &HashSet<String>) -> bool {
    let got: HashSet<&str> = lines.iter().map(String::as_str).collect();
    expected.iter().all(|line| got.contains(line.as_str()))
}
