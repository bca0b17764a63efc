//! Which server to dial. A round tries the servers in order from the preferred one (the first,
//! or with `prefer_last_server` the one that worked last); after a lost connection a new
//! round starts there. A Server Reference (DISCONNECT or CONNACK with 0x9C Use Another Server
//! or 0x9D Server Moved) is followed when `follow_server_references` asks for it: the server
//! named is dialled next, at once, with a session of its own (GUARANTEES S1: what is in flight
//! with one broker is never sent to another); 0x9D also makes it the preferred server.

use std::str::FromStr;

use tracing::{info, warn};

use super::super::error::ClientError;
use super::super::url::ServerUrl;
use super::{Driver, Slot};
use crate::packet::ReasonCode;
use crate::session::Session;
use crate::store::described;

/// Servers a broker can add to the list by references: a hostile or misconfigured broker cannot
/// grow it, or the sessions loaded for it, without bound.
const MAX_FOLLOWED: usize = 8;

/// References followed in a row without a connection coming up: two servers that send the
/// client to each other stop being followed, and the reconnect backoff takes over.
const MAX_REDIRECTS_IN_A_ROW: u32 = 8;

/// The server a reference names. The specification leaves the format open: this reads the
/// first entry of a space-separated list, either a full address (`mqtts://host:8883`) or
/// `host[:port]`, which keeps the scheme (and WebSocket path) of the server that sent it.
pub(super) fn parse_reference(reference: &str, current: &ServerUrl) -> Result<ServerUrl, String> {
    let first = reference
        .split_whitespace()
        .next()
        .ok_or_else(|| "the reference is empty".to_owned())?;
    let url = if first.contains("://") {
        ServerUrl::from_str(first).map_err(|e| e.to_string())?
    } else {
        let scheme = current.scheme().name();
        let path = if current.scheme().is_websocket() {
            current.path()
        } else {
            ""
        };
        ServerUrl::from_str(&format!("{scheme}://{first}{path}")).map_err(|e| e.to_string())?
    };
    if let Some(feature) = url.scheme().missing_feature() {
        return Err(format!(
            "{url} needs the `{feature}` feature of mooring-mqtt, which this build lacks"
        ));
    }
    if current.scheme().is_tls() && !url.scheme().is_tls() {
        return Err(format!(
            "{url} would drop TLS, which {current} uses; not followed"
        ));
    }
    Ok(url)
}

/// Where the attempts stand in the list of servers.
pub(super) struct Rotation {
    /// The first server, named when the list is empty.
    primary: ServerUrl,
    /// The server in use (or tried last), an index into the settings' servers.
    server: usize,
    /// Where a round of attempts starts.
    preferred: usize,
    /// Where the current round started: it is over when the attempts come back here.
    round_start: usize,
    /// A server a Server Reference named, to dial next.
    redirect: Option<usize>,
    /// References followed since the last connection came up.
    redirects: u32,
}

impl Rotation {
    pub(super) fn new(primary: ServerUrl) -> Self {
        Self {
            primary,
            server: 0,
            preferred: 0,
            round_start: 0,
            redirect: None,
            redirects: 0,
        }
    }

    /// The server in use (or tried last).
    pub(super) fn server(&self) -> usize {
        self.server
    }

    /// A Server Reference named the server to dial next.
    pub(super) fn redirected(&self) -> bool {
        self.redirect.is_some()
    }
}

impl Driver {
    pub(super) fn slot_of(&self, server: usize) -> usize {
        if self.settings.cluster_scope.is_some() {
            0
        } else {
            server
        }
    }

    pub(super) fn server_url(&self) -> ServerUrl {
        self.settings
            .servers
            .get(self.rotation.server)
            .cloned()
            .unwrap_or_else(|| self.rotation.primary.clone())
    }

    /// A new round of attempts, after a lost connection: from the referenced server if one
    /// was followed, else from the preferred one. Returns whether it follows a reference.
    pub(super) fn start_round(&mut self) -> bool {
        let (start, followed) = match self.rotation.redirect.take() {
            Some(server) => (server, true),
            None => (self.rotation.preferred, false),
        };
        self.rotation.server = start;
        self.rotation.round_start = start;
        followed
    }

    /// Moves to the next server after a failed attempt; returns whether the round is over.
    pub(super) fn next_server(&mut self) -> bool {
        let count = self.settings.servers.len().max(1);
        self.rotation.server = (self.rotation.server + 1) % count;
        self.rotation.server == self.rotation.round_start
    }

    /// A connection is up on the current server.
    pub(super) fn server_worked(&mut self) {
        self.rotation.redirects = 0;
        if self.settings.prefer_last_server {
            self.rotation.preferred = self.rotation.server;
        }
    }

    /// The server ended the connection or refused it with `reason` and `reference`: when the
    /// client follows references and this is one, the server it names is dialled next
    /// ([`Driver::start_round`] or the failed attempt picks it up). Returns whether it is.
    pub(super) async fn follow(&mut self, reason: ReasonCode, reference: Option<&str>) -> bool {
        let moved = match reason {
            ReasonCode::UseAnotherServer => false,
            ReasonCode::ServerMoved => true,
            _ => return false,
        };
        let Some(reference) = reference.filter(|_| self.settings.follow_server_references) else {
            return false;
        };
        if self.rotation.redirects >= MAX_REDIRECTS_IN_A_ROW {
            warn!(
                reference,
                "too many Server References in a row; not followed"
            );
            return false;
        }
        let current = self.server_url();
        let url = match parse_reference(reference, &current) {
            Ok(url) => url,
            Err(why) => {
                warn!(reference, %why, "Server Reference not followed");
                return false;
            }
        };
        let index = match self.settings.servers.iter().position(|s| *s == url) {
            Some(index) => index,
            None => match self.add_server(url.clone()).await {
                Ok(index) => index,
                Err(why) => {
                    warn!(%url, %why, "Server Reference not followed");
                    return false;
                }
            },
        };
        info!(from = %current, to = %url, moved, "following the Server Reference");
        self.rotation.redirects += 1;
        self.rotation.redirect = Some(index);
        if moved {
            self.rotation.preferred = index;
        }
        true
    }

    /// Adds a server a reference named, with the session the store keeps for it (or the
    /// cluster's, which every server shares). Returns its index.
    async fn add_server(&mut self, url: ServerUrl) -> Result<usize, String> {
        if self.settings.servers.len() >= self.configured_servers + MAX_FOLLOWED {
            return Err(format!(
                "{MAX_FOLLOWED} servers were added by references already"
            ));
        }
        if self.settings.cluster_scope.is_none() {
            let key = url.session_key(self.settings.session.client_id.clone());
            let store = &self.store;
            store.acquire(&key).await.map_err(|e| described(&e))?;
            let stored = store
                .resume(&key, self.settings.session.queue_window)
                .await
                .map_err(|e| described(&e))?;
            let mut session =
                Session::new(self.settings.session_options(), stored, self.clock.now_ms())
                    .map_err(|e| described(&ClientError::from(e)))?;
            if let Some(make) = &self.settings.authenticator {
                session.set_authenticator(make());
            }
            self.slots.push(Slot::new(key, session, &*self.store));
        }
        self.settings.servers.push(url);
        Ok(self.settings.servers.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> ServerUrl {
        text.parse().unwrap()
    }

    #[test]
    fn a_reference_keeps_the_scheme_and_path_unless_it_names_its_own() {
        let tcp = url("mqtt://a:1883");
        assert_eq!(
            parse_reference("b:1884", &tcp).unwrap(),
            url("mqtt://b:1884")
        );
        assert_eq!(parse_reference("b", &tcp).unwrap(), url("mqtt://b:1883"));
        assert_eq!(
            parse_reference("b:1 c:2", &tcp).unwrap(),
            url("mqtt://b:1"),
            "the first of a list"
        );
        assert_eq!(
            parse_reference("[::1]:9000", &tcp).unwrap(),
            url("mqtt://[::1]:9000")
        );
        if cfg!(feature = "tls") {
            assert_eq!(
                parse_reference("mqtts://b", &tcp).unwrap(),
                url("mqtts://b:8883")
            );
        }
        if cfg!(all(feature = "tls", feature = "websocket")) {
            let ws = url("wss://a/ws");
            assert_eq!(
                parse_reference("b:443", &ws).unwrap(),
                url("wss://b:443/ws")
            );
        }
    }

    #[test]
    fn a_reference_whose_scheme_needs_a_missing_feature_is_not_followed() {
        let followed = parse_reference("ws://b:80", &url("mqtt://a"));
        let websocket = cfg!(feature = "websocket");
        assert_eq!(followed.is_ok(), websocket, "{followed:?}");
        if let Err(why) = followed {
            assert!(why.contains("`websocket` feature"), "{why}");
        }
    }

    #[test]
    fn a_reference_that_drops_tls_or_makes_no_sense_is_refused() {
        let tls = url("mqtts://a");
        let err = parse_reference("mqtt://b", &tls).unwrap_err();
        assert!(err.contains("drop TLS"), "{err}");
        assert!(parse_reference("  ", &tls).is_err());
        assert!(parse_reference("ftp://b", &tls).is_err());
    }
}
