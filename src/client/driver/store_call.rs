//! A store call the loop polls itself: a commit or a queue read. Polled inside the driver's
//! task rather than spawned, so that a store that answers at once (memory, or a commit
//! whose thread is already done) costs no task, no wake of another worker and no second
//! turn; a store that panics still fails only the call, as a spawned task's would.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::store::StoreError;

/// A store call in flight.
pub(super) struct StoreCall<T> {
    call: Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>,
    /// It panicked: never polled again.
    panicked: bool,
}

impl<T> StoreCall<T> {
    /// The call `call` makes; it runs as the loop polls it.
    pub(super) fn new(call: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Self {
        Self {
            call: Box::pin(call),
            panicked: false,
        }
    }

    /// What the store answered, or its panic as a store error (what `what` was).
    pub(super) fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        what: &'static str,
    ) -> Poll<Result<T, StoreError>> {
        if self.panicked {
            return Poll::Pending;
        }
        let call = &mut self.call;
        match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(answer) => answer,
            Err(panic) => {
                self.panicked = true;
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                Poll::Ready(Err(StoreError::Backend {
                    backend: what,
                    message: format!("the store panicked: {message}"),
                    source: None,
                }))
            }
        }
    }

    /// Resolves with what the store answered.
    pub(super) async fn answer(&mut self, what: &'static str) -> Result<T, StoreError> {
        std::future::poll_fn(|cx| self.poll_answer(cx, what)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_that_panics_fails_its_call_with_the_panic_message() {
        let mut call = StoreCall::<()>::new(async { panic!("disk on fire") });
        let Err(StoreError::Backend { message, .. }) = call.answer("commit").await else {
            panic!("a panic was not an error");
        };
        assert!(message.contains("disk on fire"), "{message}");
    }

    #[tokio::test]
    async fn an_answer_ready_at_once_comes_on_the_first_poll() {
        let mut call = StoreCall::new(async { Ok::<_, StoreError>(7) });
        let polled = call.poll_answer(&mut Context::from_waker(std::task::Waker::noop()), "read");
        assert!(matches!(polled, Poll::Ready(Ok(7))));
    }
}
