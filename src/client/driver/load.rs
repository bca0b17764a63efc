//! Starting the driver: every session the servers use loaded (a standby waits here for the
//! owner's lease), the wall clock started from what the sessions saw, and the store's other
//! sessions looked after in the background (`housekeeping.rs`).

use std::sync::Arc;

use tracing::warn;

use super::super::clock::WallClock;
use super::super::error::ClientError;
use super::super::metrics::Metrics;
use super::connection::Connection;
use super::inbound::Inbox;
use super::pipeline::Pipeline;
use super::publishes::Publishes;
use super::requests::Requests;
use super::stopping::Stopping;
use super::{Driver, Parts, Slot, housekeeping, redelivery};
use crate::session::Session;
use crate::store::SessionKey;

impl Driver {
    /// Loads every session the servers use and builds the driver.
    pub(crate) async fn load(parts: Parts) -> Result<Self, ClientError> {
        let settings = parts.settings;
        let primary = settings
            .servers
            .first()
            .cloned()
            .ok_or(ClientError::NoServer)?;
        let keys: Vec<SessionKey> = match &settings.cluster_scope {
            Some(scope) => vec![SessionKey::cluster(
                scope.clone(),
                settings.session.client_id.clone(),
            )],
            None => settings
                .servers
                .iter()
                .map(|s| s.session_key(settings.session.client_id.clone()))
                .collect(),
        };
        let mut resumed = Vec::with_capacity(keys.len());
        for key in keys {
            // A store shared by machines: wait until this process owns the session (a
            // standby waits here for the owner's lease to lapse).
            parts
                .store
                .acquire(&key)
                .await
                .map_err(|e| ClientError::Store(Arc::new(e)))?;
            let stored = parts
                .store
                .resume(&key, settings.session.queue_window)
                .await
                .map_err(|e| ClientError::Store(Arc::new(e)))?;
            resumed.push((key, stored));
        }
        // Never before what a session already saw: a system clock behind it is wrong (a
        // gateway without a real-time clock boots in 1970).
        let floor = resumed
            .iter()
            .filter_map(|(_, stored)| stored.meta.as_ref()?.clock_floor_ms())
            .max();
        let (clock, trusted) = WallClock::start(settings.wall_clock.clone(), floor);
        if !trusted {
            warn!(
                floor_ms = floor,
                "the system clock is behind what the session saw: the client's clock goes on \
                 from there, and what it stamps is corrected when the system clock steps"
            );
        }
        let mut slots = Vec::with_capacity(resumed.len());
        for (key, stored) in resumed {
            // A session stamped on a clock not known to be right (an earlier start behind its
            // stamps, never corrected by a step): the right clock now is its step. It opens in
            // its own frame, then moves to this one.
            let catch_up = floor.filter(|_| {
                trusted
                    && stored
                        .meta
                        .as_ref()
                        .is_some_and(|m| m.clock.untrusted_since.is_some())
            });
            let opened_at = catch_up.unwrap_or_else(|| clock.now_ms());
            let mut session = Session::new(settings.session_options(), stored, opened_at)?;
            if !trusted {
                session.clock_unsure();
            } else if let Some(floor) = catch_up {
                let shift = clock.now_ms().saturating_sub(floor);
                session.clock_stepped(i64::try_from(shift).unwrap_or(i64::MAX));
            }
            if let Some(make) = &settings.authenticator {
                session.set_authenticator(make());
            }
            slots.push(Slot::new(key, session, &*parts.store));
        }
        let configured: Vec<SessionKey> = slots.iter().map(|s| s.key.clone()).collect();
        let housekeeping = tokio::spawn(housekeeping::look_after_other_sessions(
            parts.store.clone(),
            clock.clone(),
            settings.session.client_id.clone(),
            housekeeping::InUse::mark(&*parts.store, configured),
            parts.events.clone(),
        ));
        Ok(Self {
            configured_servers: settings.servers.len(),
            slots,
            active: 0,
            rotation: super::servers::Rotation::new(primary),
            wire: super::wire::Wire::new(),
            conn: Connection::new(
                &settings.session.client_id,
                parts.first_connect,
                parts.first_failure,
                parts.seed,
            ),
            store: parts.store.clone(),
            pipeline: Pipeline::new(parts.store),
            publishes: Publishes::default(),
            inbox: Inbox::new(parts.inbox, settings.ack_mode(), parts.seed),
            redeliveries: redelivery::Redeliveries::new(settings.redelivery()),
            pacer: settings
                .drain_rate
                .map(|rate| crate::client::drain_rate::Pacer::new(rate, super::clock::now())),
            requests: Requests::default(),
            stopping: Stopping::default(),
            commands: parts.commands,
            commands_open: true,
            alive: Some(parts.alive),
            panicked: parts.panicked,
            stopped: parts.stopped,
            events: parts.events,
            stats: parts.stats,
            metrics: {
                let metrics = Metrics::new(&settings.session.client_id);
                metrics.queue_limits(settings.queue_limit, settings.queue_limit_bytes);
                metrics
            },
            housekeeping,
            lease_lapsed: false,
            timer: Box::pin(tokio::time::sleep(super::CLOCK_CHECK)),
            refresh: Default::default(),
            gate: parts.gate,
            clock,
            settings,
        })
    }
}
