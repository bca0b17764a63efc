//! Topic Names and Topic Filters (section 4.7) and Shared Subscriptions (section 4.8.2).

use super::error::TopicError;

const MAX_TOPIC_LEN: usize = 65_535;
const SHARE_PREFIX: &str = "$share/";

// The checks scan bytes: '/', '+', '#' and NUL are ASCII, and UTF-8 never uses an ASCII byte
// inside a multi-byte character, so a byte match is a character match.

fn check_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(topic.len()));
    }
    Ok(())
}

/// Checks a Topic Name, the topic a PUBLISH is sent to: at least one character, at most
/// 65,535 bytes, no U+0000 and no wildcard.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_length(topic)?;
    for byte in topic.bytes() {
        match byte {
            0 => return Err(TopicError::NullCharacter),
            b'+' | b'#' => return Err(TopicError::WildcardInName),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a Topic Filter, what a SUBSCRIBE or UNSUBSCRIBE names: the rules of a Topic Name,
/// except that `+` may fill a whole level and `#` may fill the last one; a `$share/ShareName/`
/// prefix must name a non-empty ShareName without wildcards, followed by a valid filter.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    let filter = match filter.strip_prefix(SHARE_PREFIX) {
        Some(shared) => {
            let (share_name, rest) = shared
                .split_once('/')
                .ok_or(TopicError::SharedWithoutFilter)?;
            if share_name.contains('\0') {
                return Err(TopicError::NullCharacter);
            }
            if share_name.is_empty() || share_name.contains(['+', '#']) {
                return Err(TopicError::InvalidShareName);
            }
            if rest.is_empty() {
                return Err(TopicError::SharedWithoutFilter);
            }
            rest
        }
        None => filter,
    };
    check_levels(filter)
}

/// Checks a Topic Filter of MQTT 3.1.1, which has no Shared Subscriptions: `$share/...` is an
/// ordinary filter there.
pub(crate) fn validate_plain_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    check_levels(filter)
}

/// The wildcard placement and U+0000 rules of a Topic Filter.
fn check_levels(filter: &str) -> Result<(), TopicError> {
    let bytes = filter.as_bytes();
    let mut level_start = true;
    for (i, &byte) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        match byte {
            0 => return Err(TopicError::NullCharacter),
            b'#' if !level_start || next.is_some() => {
                return Err(TopicError::MultiLevelWildcardPlacement);
            }
            b'+' if !level_start || next.is_some_and(|n| n != b'/') => {
                return Err(TopicError::SingleLevelWildcardPlacement);
            }
            _ => {}
        }
        level_start = byte == b'/';
    }
    Ok(())
}

/// Whether `topic` matches `filter`, with `+` (one level) and `#` (this level and all below).
/// A shared subscription (`$share/group/filter`) matches as its filter. Wildcards at the first
/// level do not match topics starting with `$` [MQTT-4.7.2-1].
///
/// ```
/// use mooring_core::packet::topic_matches;
/// assert!(topic_matches("plant/+/telemetry", "plant/7/telemetry"));
/// assert!(topic_matches("plant/#", "plant"));
/// assert!(!topic_matches("#", "$SYS/uptime"));
/// assert!(topic_matches("$share/g/a/+", "a/b"));
/// ```
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        match part {
            "#" => return true,
            "+" => {
                if levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

/// Whether `filter` names a Shared Subscription (`$share/ShareName/filter`).
pub fn is_shared_subscription(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in [
            "a",
            "/",
            "a/b",
            "/a/",
            "$SYS/x",
            "sport/tennis/player1",
            " ",
            "\u{FEFF}",
        ] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        let long = "x".repeat(65_536);
        assert_eq!(validate_topic_name(&long), Err(TopicError::TooLong(65_536)));
        assert_eq!(validate_topic_name(&long[1..]), Ok(()));
    }

    #[test]
    fn topic_filters_section_4_7_1() {
        for ok in [
            "#",
            "+",
            "+/+",
            "/+",
            "+/",
            "sport/#",
            "sport/tennis/#",
            "sport/+/player1",
            "+/tennis/#",
            "a//b",
            "$SYS/#",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "#/",
            "a/#b",
            "##",
        ] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MultiLevelWildcardPlacement),
                "{bad:?}"
            );
        }
        for bad in ["sport+", "sport/+tennis", "++"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::SingleLevelWildcardPlacement),
                "{bad:?}"
            );
        }
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared_subscriptions_section_4_8_2() {
        assert_eq!(validate_topic_filter("$share/g/a/b"), Ok(()));
        assert_eq!(validate_topic_filter("$share/g/#"), Ok(()));
        assert_eq!(validate_topic_filter("$share/g//"), Ok(()));
        assert_eq!(
            validate_topic_filter("$share//a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            validate_topic_filter("$share/+/a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            validate_topic_filter("$share/g#/a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            validate_topic_filter("$share/g"),
            Err(TopicError::SharedWithoutFilter)
        );
        assert_eq!(
            validate_topic_filter("$share/g/"),
            Err(TopicError::SharedWithoutFilter)
        );
        assert_eq!(
            validate_topic_filter("$share/g/a+"),
            Err(TopicError::SingleLevelWildcardPlacement)
        );
        assert!(is_shared_subscription("$share/g/a"));
        assert!(!is_shared_subscription("$SHARE/g/a"));
        assert_eq!(
            validate_topic_filter("$share/a\0/b"),
            Err(TopicError::NullCharacter)
        );
        assert_eq!(
            validate_topic_filter("$share/a/b\0"),
            Err(TopicError::NullCharacter)
        );
        // "$share" alone or "$sharex/..." is an ordinary filter.
        assert_eq!(validate_topic_filter("$share"), Ok(()));
    }
}
