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
