//! What a client speaking MQTT 3.1.1 cannot be asked for: refused when it is built, so that no
//! setting is dropped without a word. Calls are checked by the engine (a publish with v5
//! properties, a refusal, a DISCONNECT reason code).

use super::error::ClientError;
use super::policy::{Exhausted, Redelivery};
use crate::packet::{ProtocolVersion, WillProperties};
use crate::session::SessionOptions;

/// Refuses the v5-only settings of a 3.1.1 client: those of its session, an authenticator
/// (`authenticated`), a redelivery policy that ends in a refusal.
pub(super) fn check(
    session: &SessionOptions,
    authenticated: bool,
    redelivery: Option<&Redelivery>,
) -> Result<(), ClientError> {
    if session.protocol != ProtocolVersion::V311 {
        return Ok(());
    }
    let properties = &session.properties;
    let refused = [
        (authenticated, "enhanced authentication"),
        (
            session
                .will
                .as_ref()
                .is_some_and(|w| w.properties != WillProperties::default()),
            "Will properties",
        ),
        (
            !properties.user_properties.is_empty(),
            "CONNECT User Properties",
        ),
        (
            properties.request_response_information.is_some(),
            "Request Response Information",
        ),
        (
            properties.request_problem_information.is_some(),
            "Request Problem Information",
        ),
        (
            properties.topic_alias_maximum.is_some(),
            "Topic Aliases from the server",
        ),
        (
            session
                .publish_keys
                .is_some_and(|k| k.carrier == crate::idempotency::KeyCarrier::UserProperty),
            "idempotency keys in a User Property (use KeyCarrier::Envelope)",
        ),
        (
            redelivery.is_some_and(|r| matches!(r.exhausted, Exhausted::Refuse(_))),
            "refusing a message after its last delivery (use Exhausted::Discard or DeadLetter)",
        ),
    ];
    match refused.into_iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(ClientError::NeedsV5(what)),
        None => Ok(()),
    }
}
