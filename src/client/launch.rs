//! Starting a client: the session loaded, the connection task spawned, the handles made.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use tokio::sync::{mpsc, oneshot, watch};

use super::error::ClientError;
use super::events::ClientEvent;
use super::events::StatsCell;
use super::inbox::Messages;
use super::options::ClientBuilder;
use super::{Client, Inner, driver, inbox};

impl ClientBuilder {
    /// Loads the session, starts the connection task and returns once the first CONNACK
    /// succeeded. Fails with the first round's last error when no server accepts, after
    /// trying each once; use [`ClientBuilder::start`] to keep trying in the background.
    ///
    /// Cancel safety: dropped before it returned, the client it started stops (nothing holds
    /// its handles any more).
    pub async fn connect(self) -> Result<(Client, Messages), ClientError> {
        let (client, messages, first) = self.launch(driver::FirstFailure::Fail).await?;
        match first.await {
            Ok(Ok(())) => Ok((client, messages)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// Loads the session and starts the connection task without waiting for a connection:
    /// publishes queue durably until one is up. For gateways that must start offline.
    ///
    /// Cancel safety: dropped before it returned, the client it started (if it got that far)
    /// stops.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mooring::client::ClientError> {
    /// use mooring::client::Client;
    /// use mooring::packet::QoS;
    /// # let store = mooring::store::MemoryStore::default();
    /// let (client, _messages) = Client::builder()
    ///     .server("mqtt://10.0.0.5")
    ///     .client_id("gateway-7")
    ///     .store(store)
    ///     .start()
    ///     .await?;
    /// // Durable now, sent whenever the broker is reachable.
    /// let _delivery = client.publish("site/7/boot", "1", QoS::AtLeastOnce).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(self) -> Result<(Client, Messages), ClientError> {
        let (client, messages, _first) = self.launch(driver::FirstFailure::Retry).await?;
        Ok((client, messages))
    }

    async fn launch(
        self,
        first_failure: driver::FirstFailure,
    ) -> Result<(Client, Messages, oneshot::Receiver<Result<(), ClientError>>), ClientError> {
        let settings = self.settings()?;
        let store = self.store.clone().ok_or(ClientError::NoStore)?;
        let (commands, command_rx) = mpsc::channel(self.command_capacity);
        let events = self.events.clone();
        if let Some(set_aside) = self.set_aside.clone() {
            tracing::warn!(
                path = %set_aside.path.display(),
                moved_to = %set_aside.moved_to.display(),
                cause = %set_aside.cause,
                "the store was damaged: it was moved aside and a fresh one started"
            );
            events.send(ClientEvent::StoreSetAside {
                path: set_aside.path,
                moved_to: set_aside.moved_to,
                cause: set_aside.cause,
            });
        }
        let (inbox, inbox_rx) = mpsc::channel(settings.inbox_capacity);
        let (alive, alive_rx) = oneshot::channel();
        let (first_tx, first_rx) = oneshot::channel();
        let stats = Arc::new(StatsCell::default());
        // Seeds the reconnect jitter and names this client's responses.
        let seed = fastrand::u64(..);
        let response_topic = self.response_topic.clone().unwrap_or_else(|| {
            let id = if settings.session.client_id.is_empty() {
                format!("{seed:016x}")
            } else {
                settings.session.client_id.clone()
            };
            format!("mooring/response/{id}")
        });
        let gate = inbox::OwnershipGate::new(&store);
        let (stopped_tx, stopped) = watch::channel(None);
        let panicked = Arc::new(AtomicBool::new(false));
        let driver = driver::Driver::load(driver::Parts {
            settings,
            store,
            gate: gate.clone(),
            commands: command_rx,
            inbox,
            events: events.clone(),
            stats: stats.clone(),
            alive: alive_rx,
            panicked: panicked.clone(),
            stopped: stopped_tx,
            first_connect: first_tx,
            first_failure,
            seed,
        })
        .await?;
        tokio::spawn(driver.run());
        let client = Client {
            inner: Arc::new(Inner {
                commands,
                events,
                stats,
                response_topic,
                response_subscribed: tokio::sync::OnceCell::new(),
                next_correlation: AtomicU64::new(0),
                correlation_seed: seed,
                stopped,
                panicked,
                _alive: alive,
            }),
        };
        Ok((client, Messages::new(inbox_rx, gate), first_rx))
    }
}
