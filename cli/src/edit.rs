//! The commands that change a store: `drop-session` and `move-session`. Both open the store for
//! themselves, so a store that a running client holds is refused before anything is touched.

use std::path::Path;
use std::str::FromStr;

use mooring::client::ServerUrl;
use mooring::store::{HeldMessages, QueueWindow, SessionKey, StoreError, move_session as move_in};

use serde::Serialize;

use crate::Failure;
use crate::read::Versioned;
use crate::store_file::{Access, StoreFile, find_session, session_name};

fn described(held: &HeldMessages) -> String {
    format!(
        "{} queued message(s) and {} in flight",
        held.queued, held.in_flight
    )
}

/// What an edit did, as `--json` prints it.
#[derive(Serialize)]
struct Done {
    done: &'static str,
    session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    in_flight: usize,
    queued: u64,
}

/// Prints what was done: as one JSON object with `--json`, else as `text`.
fn report(json: bool, done: &Done, text: &str) {
    if json {
        match serde_json::to_string(&Versioned::of(done)) {
            Ok(line) => println!("{line}"),
            Err(e) => println!("{{\"error\":{:?}}}", e.to_string()),
        }
    } else {
        println!("{text}");
    }
}

/// `mooring store drop-session FILE --session KEY [--yes]`.
pub async fn drop_session(
    path: &Path,
    wanted: &str,
    confirmed: bool,
    json: bool,
) -> Result<(), Failure> {
    let store = StoreFile::open(path, Access::Write("before dropping a session"))?;
    let key = find_session(&store, wanted).await?;
    let session = store
        .sessions()
        .resume(&key, QueueWindow::NONE)
        .await
        .map_err(|e| Failure::damaged(e.to_string()))?;
    let held = HeldMessages::of(&session);
    let name = session_name(&key);
    if !confirmed {
        let loss = if held.is_empty() {
            "no message, only its state".to_owned()
        } else {
            format!("{}; they are lost if it is dropped", described(&held))
        };
        return Err(Failure::new(format!(
            "session {name} holds {loss}. Run again with --yes to drop it"
        )));
    }
    store
        .sessions()
        .clear(&key)
        .await
        .map_err(|e| Failure::new(format!("dropping {name} failed: {e}")))?;
    report(
        json,
        &Done {
            done: "dropped",
            session: name.clone(),
            to: None,
            in_flight: held.in_flight,
            queued: held.queued,
        },
        &format!("dropped session {name} and {}", described(&held)),
    );
    Ok(())
}

/// The key `to` names for `client_id`: a server address in its canonical form (so that it is
/// the key a client configured with that address uses), or `cluster:NAME`.
fn target_key(to: &str, client_id: &str) -> Result<SessionKey, Failure> {
    if let Some(name) = to.strip_prefix("cluster:") {
        return Ok(SessionKey::cluster(name, client_id));
    }
    let url = ServerUrl::from_str(to).map_err(|e| {
        Failure::new(format!(
            "{e}; give --to as a server address such as mqtt://host:1883, or cluster:NAME"
        ))
    })?;
    Ok(url.session_key(client_id))
}

/// `mooring store move-session FILE --session KEY --to SERVER`.
pub async fn move_session(path: &Path, wanted: &str, to: &str, json: bool) -> Result<(), Failure> {
    let store = StoreFile::open(path, Access::Write("before moving a session"))?;
    let from = find_session(&store, wanted).await?;
    let target = target_key(to, from.client_id())?;
    let (from_name, to_name) = (session_name(&from), session_name(&target));
    if from == target {
        return Err(Failure::new(format!(
            "session {from_name} is already under {to}"
        )));
    }
    let session = store
        .sessions()
        .resume(&from, QueueWindow::NONE)
        .await
        .map_err(|e| Failure::damaged(e.to_string()))?;
    let held = HeldMessages::of(&session);
    move_in(store.sessions(), &from, &target)
        .await
        .map_err(|e| match e {
            StoreError::Occupied { .. } => Failure::new(format!(
                "{to_name} holds messages of its own, whose packet identifiers could collide; \
                 drop it or deliver them first"
            )),
            other => Failure::new(format!("moving {from_name} failed: {other}")),
        })?;
    report(
        json,
        &Done {
            done: "moved",
            session: from_name.clone(),
            to: Some(to_name.clone()),
            in_flight: held.in_flight,
            queued: held.queued,
        },
        &format!(
            "moved session {from_name} to {to_name} with {}",
            described(&held)
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_address_becomes_the_key_the_client_would_use() {
        let key = target_key("tcp://broker.example", "gw").unwrap();
        assert_eq!(key, SessionKey::new("mqtt://broker.example:1883", "gw"));
        let key = target_key("cluster:site-7", "gw").unwrap();
        assert_eq!(key, SessionKey::cluster("site-7", "gw"));
        let err = target_key("ftp://x", "gw").unwrap_err();
        assert!(err.message.contains("--to"), "{}", err.message);
    }
}
