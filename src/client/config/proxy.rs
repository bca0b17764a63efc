//! `[[proxies]]`: the proxies servers are reached through, as a file says them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};
use crate::client::proxy::{Proxy, ProxyRoutes};

/// A proxy and the servers that go through it (one `[[proxies]]` table).
///
/// ```toml
/// [[proxies]]
/// url = "socks5h://10.0.0.1:1080"
/// username = "gw"
/// password_env = "PROXY_PASSWORD"
/// servers = ["mqtts://broker.example:8883"]
/// ```
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// `http://host:port`, `socks5://host:port` or `socks5h://host:port`.
    pub url: String,
    /// The user name it wants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (text). Better kept out of the file: `password_env` or `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The password, from this environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The password, from this file (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The servers that go through it, as written in `servers`; none: every server that no
    /// other `[[proxies]]` names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password (nor one written into the address).
        let url = self
            .url
            .parse::<Proxy>()
            .map_or_else(|_| "<invalid>".to_owned(), |p| p.to_string());
        f.debug_struct("ProxyConfig")
            .field("url", &url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("servers", &self.servers)
            .finish()
    }
}

impl ProxyConfig {
    /// The proxy it describes, its password read from where it is given.
    pub(crate) fn proxy(&self, index: usize) -> Result<Proxy, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: "the configuration".to_owned(),
            field: format!("proxies[{index}].{field}"),
            message,
        };
        let proxy = Proxy::parse(&self.url).map_err(|e| invalid("url", e.to_string()))?;
        let password = Secret::from_sources(
            &format!("proxies[{index}].password"),
            self.password.as_deref(),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )?;
        match (&self.username, password) {
            (Some(user), password) => {
                Ok(proxy.with_credentials(user.clone(), password.unwrap_or_default()))
            }
            (None, Some(_)) => Err(invalid(
                "username",
                "a proxy password needs its user name".to_owned(),
            )),
            (None, None) => Ok(proxy),
        }
    }

    fn of(proxy: &Proxy, servers: Vec<String>) -> Self {
        Self {
            url: proxy.without_credentials().to_string(),
            username: proxy.username().map(str::to_owned),
            password: proxy.password().map(str::to_owned),
            servers,
            ..Self::default()
        }
    }
}

/// The `[[proxies]]` tables as the builder takes them: the proxy for every server, and the
/// routes of single servers.
pub(crate) fn routes_of(
    configs: &[ProxyConfig],
    from_env: bool,
) -> Result<(Option<Proxy>, ProxyRoutes), ConfigError> {
    let mut every = None;
    let mut routes = ProxyRoutes::default();
    routes.from_env = from_env;
    for (index, config) in configs.iter().enumerate() {
        let proxy = config.proxy(index)?;
        if config.servers.is_empty() {
            if every.is_some() {
                return Err(ConfigError::Invalid {
                    origin: "the configuration".to_owned(),
                    field: format!("proxies[{index}].servers"),
                    message: "only one proxy may serve every server; name the servers of the \
                              others"
                        .to_owned(),
                });
            }
            every = Some(proxy);
        } else {
            for server in &config.servers {
                routes.set(server.clone(), proxy.clone());
            }
        }
    }
    Ok((every, routes))
}

/// The `[[proxies]]` tables that say `every` and `routes`.
pub(crate) fn configs_of(every: Option<&Proxy>, routes: &ProxyRoutes) -> Vec<ProxyConfig> {
    every
        .map(|proxy| ProxyConfig::of(proxy, Vec::new()))
        .into_iter()
        .chain(
            routes
                .per_server()
                .iter()
                .map(|(server, proxy)| ProxyConfig::of(proxy, vec![server.clone()])),
        )
        .collect()
}
