//! Secrets a configuration names rather than holds: a password read from an environment
//! variable or a file, so that the file can be shared, versioned and printed.

use std::path::Path;

use super::ConfigError;

/// Reads a secret from the one source a configuration gives for it.
pub(crate) struct Secret;

impl Secret {
    /// The secret `key` from its value in the file, the environment variable named by
    /// `{key}_env`, or the first line of the file named by `{key}_file`; `None` when none is
    /// given. Two sources at once are refused, as is a variable that is not set or a file
    /// that cannot be read.
    pub(crate) fn from_sources(
        key: &str,
        value: Option<&str>,
        env: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<String>, ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            origin: "the configuration".to_owned(),
            field,
            message,
        };
        let given = [value.is_some(), env.is_some(), file.is_some()];
        if given.iter().filter(|set| **set).count() > 1 {
            return Err(invalid(
                key.to_owned(),
                format!("give one of {key}, {key}_env and {key}_file"),
            ));
        }
        if let Some(value) = value {
            return Ok(Some(value.to_owned()));
        }
        if let Some(variable) = env {
            return std::env::var(variable).map(Some).map_err(|e| {
                invalid(
                    format!("{key}_env"),
                    format!("the environment variable {variable}: {e}"),
                )
            });
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
        }
        Ok(None)
    }
}
