//! The client's events, one queue per receiver: a slow reader never misses the events that
//! decide what an application does ([`ClientEvent::is_critical`]); of the others it keeps the
//! newest [`ORDINARY_KEPT`] and says how many it dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use super::events::ClientEvent;

/// Ordinary events a receiver keeps unread before it drops the oldest of them.
pub const ORDINARY_KEPT: usize = 256;

/// Critical events a receiver keeps unread: a bound on the memory of a receiver nobody
/// reads (one event per connection at most, in practice), far beyond any slow reader.
pub const CRITICAL_KEPT: usize = 4096;

#[derive(Default)]
struct Queue {
    events: VecDeque<ClientEvent>,
    /// Ordinary events among them.
    ordinary: usize,
    /// Events dropped since the reader last heard of it.
    missed: u64,
    /// The client stopped: the queue ends once read.
    closed: bool,
    /// The reader waiting for an event.
    waker: Option<Waker>,
}

impl Queue {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn push(&mut self, event: ClientEvent) {
        if !event.is_critical() {
            self.ordinary += 1;
            if self.ordinary > ORDINARY_KEPT {
                self.drop_oldest(|e| !e.is_critical());
            }
        } else if self.events.len() - self.ordinary >= CRITICAL_KEPT {
            self.drop_oldest(ClientEvent::is_critical);
        }
        self.events.push_back(event);
    }

    fn drop_oldest(&mut self, which: impl Fn(&ClientEvent) -> bool) {
        if let Some(at) = self.events.iter().position(which)
            && let Some(dropped) = self.events.remove(at)
        {
            if !dropped.is_critical() {
                self.ordinary -= 1;
            }
            self.missed += 1;
        }
    }

    /// The next event, `Some(None)` at the end, `None` while there is nothing yet.
    fn take(&mut self) -> Option<Option<ClientEvent>> {
        if self.missed > 0 {
            let count = std::mem::take(&mut self.missed);
            return Some(Some(ClientEvent::EventsMissed { count }));
        }
        match self.events.pop_front() {
            Some(event) => {
                if !event.is_critical() {
                    self.ordinary -= 1;
                }
                Some(Some(event))
            }
            None => self.closed.then_some(None),
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A receiver of the client's events, from [`ClientBuilder::events`](super::ClientBuilder::events)
/// or [`Client::events`](super::Client::events). Every receiver gets every event sent after it
/// was made, in order; it ends (`None`) after [`ClientEvent::Stopped`].
///
/// A slow reader never misses a critical event ([`ClientEvent::is_critical`]: connected,
/// session lost or expired, taken over, stopped, ...); of the other events it keeps the newest
/// 256 and, where it dropped some, hands over [`ClientEvent::EventsMissed`] first.
pub struct Events {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` once the client has stopped and every event was read.
    ///
    /// Cancel safety: cancel safe; an event is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next event if one waits; `None` otherwise (or after the end).
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.shared.lock().take().flatten()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        let mut queue = self.shared.lock();
        match queue.take() {
            Some(event) => Poll::Ready(event),
            None => {
                // Under the lock: an event sent after this wakes the waker left here.
                queue.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl futures_core::Stream for Events {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.poll_event(cx)
    }
}

/// Where the client sends its events: every receiver still held gets each one.
#[derive(Clone, Default)]
pub(crate) struct EventHub {
    receivers: Arc<Mutex<Hub>>,
}

#[derive(Default)]
struct Hub {
    receivers: Vec<Weak<Shared>>,
    closed: bool,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.receivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new receiver of the events sent from now on.
    pub(crate) fn subscribe(&self) -> Events {
        let mut hub = self.lock();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                closed: hub.closed,
                ..Queue::default()
            }),
        });
        hub.receivers.push(Arc::downgrade(&shared));
        Events { shared }
    }

    /// Sends `event` to every receiver.
    pub(crate) fn send(&self, event: ClientEvent) {
        let mut hub = self.lock();
        hub.receivers.retain(|receiver| match receiver.upgrade() {
            Some(receiver) => {
                let mut queue = receiver.lock();
                queue.push(event.clone());
                queue.wake();
                true
            }
            None => false,
        });
    }

    /// The client stopped: receivers end once they have read what they hold.
    pub(crate) fn close(&self) {
        let mut hub = self.lock();
        hub.closed = true;
        for receiver in hub.receivers.drain(..).filter_map(|r| r.upgrade()) {
            let mut queue = receiver.lock();
            queue.closed = true;
            queue.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lost() -> ClientEvent {
        ClientEvent::MessageDropped { topic: "t".into() }
    }

    #[test]
    fn a_slow_reader_keeps_every_critical_event_and_hears_how_many_others_it_missed() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        hub.send(ClientEvent::SessionExpired);
        for _ in 0..ORDINARY_KEPT + 10 {
            hub.send(lost());
        }
        hub.send(ClientEvent::InboxClosed);
        hub.close();
        let read: Vec<ClientEvent> = std::iter::from_fn(|| events.try_recv()).collect();
        assert!(
            matches!(read[0], ClientEvent::EventsMissed { count: 10 }),
            "{read:?}"
        );
        assert!(matches!(read[1], ClientEvent::SessionExpired));
        assert_eq!(read.len(), 2 + ORDINARY_KEPT + 1);
        assert!(matches!(read.last(), Some(ClientEvent::InboxClosed)));
    }

    #[test]
    fn critical_events_are_bounded_too() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        for _ in 0..CRITICAL_KEPT + 3 {
            hub.send(ClientEvent::SessionExpired);
        }
        assert!(matches!(
            events.try_recv(),
            Some(ClientEvent::EventsMissed { count: 3 })
        ));
        assert_eq!(
            std::iter::from_fn(|| events.try_recv()).count(),
            CRITICAL_KEPT
        );
    }

    #[tokio::test]
    async fn a_receiver_ends_after_the_stop_and_one_made_later_ends_at_once() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        let reader = tokio::spawn(async move {
            let mut seen = 0;
            while events.recv().await.is_some() {
                seen += 1;
            }
            seen
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.send(ClientEvent::SessionExpired);
        hub.close();
        assert_eq!(reader.await.unwrap(), 1);
        assert_eq!(hub.subscribe().recv().await.map(|_| ()), None);
    }
}
