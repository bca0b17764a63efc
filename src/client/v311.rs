//! What a client speaking MQTT 3.1.1 cannot be asked for: refused when it is built, so that no
//! setting is dropped without a word. Calls are checked by the engine (a publish with v5
//! properties, a refusal, a DISCONNECT reason code).

use super::ClientError;
use super::options::Settings;
use super::policy::Exhausted;
use crate::packet::{ProtocolVersion, WillProperties};

/// Refuses the v5-only settings of a 3.1.1 client.
pub(super) fn check(settings: &Settings) -> Result<(), ClientError> {
    if settings.session.protocol != ProtocolVersion::V311 {
        return Ok(());
    }
    let properties = &settings.session.properties;
    let refused = [
        (settings.authenticator.is_some(), "enhanced authentication"),
        (
            settings
                .session
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
            settings
                .redelivery
                .as_ref()
                .is_some_and(|r| matches!(r.exhausted, Exhausted::Refuse(_))),
            "refusing a message after its last delivery (use Exhausted::Discard or DeadLetter)",
        ),
    ];
    match refused.into_iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(ClientError::NeedsV5(what)),
        None => Ok(()),
    }
}
