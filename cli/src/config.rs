//! `mooring config`: check a client's configuration file, print the reference of its keys.

use std::path::Path;

use mooring::client::{ClientBuilder, ClientConfig};

use serde::Serialize;

use crate::read::Versioned;
use crate::{Class, Failure};

/// Reads `file` as a client would, applies it to a builder (TLS files read, password sources
/// looked up, the store section checked, addresses parsed), and prints the settings in
/// effect, defaults filled in, as TOML. Secrets are not printed.
pub fn check(file: &Path, json: bool) -> Result<(), Failure> {
    let invalid = |e: &dyn std::fmt::Display| {
        Failure::new(format!("{}: {e}", file.display())).of(Class::InvalidConfig)
    };
    let config = ClientConfig::load(file).map_err(|e| match e {
        mooring::client::ConfigError::Read { .. } => {
            Failure::new(e.to_string()).of(Class::NotFound)
        }
        other => Failure::new(other.to_string()).of(Class::InvalidConfig),
    })?;
    let builder = ClientBuilder::from_config(&config).map_err(|e| invalid(&e))?;
    builder.validate().map_err(|e| invalid(&e))?;
    let mut effective = builder.to_config().map_err(|e| invalid(&e))?;
    // What the file named, not what it resolved to: the password stays where it is.
    effective.password_env = config.password_env.clone();
    effective.password_file = config.password_file.clone();
    if effective.password.is_some() {
        effective.password = if config.password.is_some() {
            Some("<hidden>".to_owned())
        } else {
            None
        };
    }
    if let Some(tls) = &mut effective.tls {
        *tls = tls.without_secrets();
    }
    // Proxies as the file named them: their passwords, and any written into an address, not
    // shown.
    effective.proxies = config
        .proxies
        .iter()
        .map(|proxy| {
            let mut shown = proxy.clone();
            if shown.password.is_some() {
                shown.password = Some("<hidden>".to_owned());
            }
            if let Ok(parsed) = mooring::client::Proxy::parse(&shown.url) {
                shown.url = parsed.to_string();
            }
            shown
        })
        .collect();
    effective.store = config.store.clone();
    if let Some(store) = &mut effective.store
        && store.connection.is_some()
    {
        store.connection = Some("<hidden>".to_owned());
    }
    let text = toml_of(&effective).map_err(|e| invalid(&e))?;
    if json {
        #[derive(Serialize)]
        struct Checked<'a> {
            file: String,
            valid: bool,
            settings: &'a ClientConfig,
        }
        let checked = Checked {
            file: file.display().to_string(),
            valid: true,
            settings: &effective,
        };
        let line = serde_json::to_string(&Versioned::of(&checked)).map_err(|e| invalid(&e))?;
        println!("{line}");
        return Ok(());
    }
    println!(
        "# {}: valid. The settings in effect, defaults included (secrets not shown):\n",
        file.display()
    );
    print!("{text}");
    Ok(())
}

/// TOML of a configuration whose private key, if any, was replaced by a placeholder.
fn toml_of(config: &ClientConfig) -> Result<String, mooring::client::ConfigError> {
    let mut shown = config.clone();
    let key = shown.tls.as_mut().and_then(|t| t.client_key_pem.take());
    let mut text = shown.to_toml()?;
    if key.is_some() {
        text.push_str("# tls.client_key_pem is set (not shown)\n");
    }
    Ok(text)
}

/// The reference of every key (CONFIGURATION.md).
pub fn reference() {
    print!("{}", ClientConfig::reference());
}
