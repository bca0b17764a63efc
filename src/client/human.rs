//! Durations as people write them in a configuration file (`"30s"`, `"1h 30m"`, `"250ms"`),
//! read and written by humantime, and durations as the protocol counts them (whole seconds).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

fn parse<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|e| {
        E::custom(format!(
            "{e} in {text:?}: write a duration such as \"30s\", \"250ms\" or \"1h 30m\""
        ))
    })
}

/// A required duration.
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// A required duration.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(&String::deserialize(d)?)
}

/// Whole seconds, a fraction rounded up: a positive duration never becomes 0, which turns
/// keep alive off and ends a session with its connection.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Whole seconds, rounded up, at most `u16::MAX` (a Keep Alive).
pub(crate) fn secs_u16(d: Duration) -> u16 {
    u16::try_from(whole_secs(d)).unwrap_or(u16::MAX)
}

/// Whole seconds, rounded up, at most `u32::MAX` (an expiry interval).
pub(crate) fn secs_u32(d: Duration) -> u32 {
    u32::try_from(whole_secs(d)).unwrap_or(u32::MAX)
}

/// Whole seconds of `duration` written as `text`: the protocol counts keep alive and session
/// expiry in seconds, and a fraction would be cut off silently (`"500ms"` would turn keep
/// alive off).
fn whole_seconds<E: serde::de::Error>(text: &str, duration: Duration) -> Result<u64, E> {
    if duration.subsec_nanos() != 0 {
        return Err(E::custom(format!(
            "{text:?} is not a whole number of seconds: the protocol counts this in seconds"
        )));
    }
    Ok(duration.as_secs())
}

/// A Keep Alive: whole seconds from 0 (off) to 65,535.
pub(crate) mod keep_alive {
    use super::*;

    pub(crate) use super::serialize;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        let secs = whole_seconds(&text, parse(&text)?)?;
        if secs > u64::from(u16::MAX) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is longer than the protocol allows for keep alive (65535s, about 18h)"
            )));
        }
        Ok(Duration::from_secs(secs))
    }
}

/// An optional duration: absent means none.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| parse(&text))
            .transpose()
    }
}

/// A Session Expiry Interval: a duration, or `"never"` (the protocol's 0xFFFFFFFF).
pub(crate) mod expiry {
    use super::*;

    const NEVER: &str = "never";

    pub(crate) fn serialize<S: Serializer>(secs: &u32, s: S) -> Result<S::Ok, S::Error> {
        if *secs == u32::MAX {
            s.serialize_str(NEVER)
        } else {
            super::serialize(&Duration::from_secs(u64::from(*secs)), s)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        if text == NEVER {
            return Ok(u32::MAX);
        }
        let duration: Duration = parse(&text)?;
        u32::try_from(whole_seconds::<D::Error>(&text, duration)?)
            .ok()
            .filter(|secs| *secs < u32::MAX)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is longer than the protocol allows (136 years); write \"never\" \
                     for a session that never expires"
                ))
            })
    }
}
