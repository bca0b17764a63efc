//! The crash proof's broker and the path to it: mosquitto behind the fault proxy (a cut drops
//! the TCP connections), or the `mqttv5` broker over QUIC behind a UDP relay (a cut moves the
//! relay's side of the path to a new port, as a NAT that rebinds). The subscriber and the
//! feeder reach either broker straight over TCP.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::pki::Pki;
use integration::proxy::FaultProxy;
use integration::quic_broker::QuicBroker;
use integration::softhsm::SoftToken;
use integration::udp_relay::{PathShape, UdpRelay};

use super::gateway::Variant;

pub enum ProofBroker {
    Mosquitto {
        broker: Mosquitto,
        proxy: FaultProxy,
        /// The token holding the gateway's TLS key, when the path needs one.
        token: Option<SoftToken>,
    },
    Quic {
        broker: QuicBroker,
        relay: UdpRelay,
    },
}

impl ProofBroker {
    pub fn start(variant: Variant) -> Self {
        if variant.over_quic {
            let broker = QuicBroker::start().unwrap();
            let relay = UdpRelay::start(
                SocketAddr::from(([127, 0, 0, 1], broker.quic_port())),
                PathShape::default(),
            )
            .unwrap();
            return Self::Quic { broker, relay };
        }
        let broker = Mosquitto::with_config(&MosquittoConfig {
            persistence: true,
            extra: vec!["max_queued_messages 0".into()],
            max_inflight_messages: Some(variant.broker_window),
            tls: variant.key_in_token,
            require_client_certificate: variant.key_in_token,
            ..MosquittoConfig::default()
        })
        .unwrap();
        let (port, token) = match broker.pki() {
            Some(pki) => {
                let token = SoftToken::new("proof-gateway").unwrap();
                let public = token.generate("EC:prime256v1", "device", "01").unwrap();
                let (_, der) = pki.certify("proof-gateway", &public).unwrap();
                token.store_certificate(&der, "device", "01").unwrap();
                let tls = broker.tls_url().unwrap();
                (
                    tls.rsplit(':').next().unwrap().parse().unwrap(),
                    Some(token),
                )
            }
            None => (broker.port(), None),
        };
        let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        Self::Mosquitto {
            broker,
            proxy,
            token,
        }
    }

    /// Where the subscriber and the feeder connect: the broker itself, over TCP.
    pub fn url(&self) -> String {
        match self {
            Self::Mosquitto { broker, .. } => broker.url(),
            Self::Quic { broker, .. } => broker.url(),
        }
    }

    /// Where the gateway connects: through the fault proxy or the UDP relay.
    pub fn gateway_url(&self) -> String {
        match self {
            Self::Mosquitto {
                proxy, token: None, ..
            } => proxy.url(),
            Self::Mosquitto { proxy, .. } => format!("mqtts://localhost:{}", proxy.port()),
            Self::Quic { relay, .. } => format!("quic://localhost:{}", relay.port()),
        }
    }

    /// What the gateway's environment needs for this path: the CA to trust (TLS, QUIC), the
    /// token's configuration and the key's URI.
    pub fn gateway_env(&self) -> Vec<(&'static str, OsString)> {
        let ca = |pki: &Pki| ("GATEWAY_CA_FILE", pki.ca.clone().into_os_string());
        match self {
            Self::Mosquitto {
                broker,
                token: Some(token),
                ..
            } => {
                let (conf, path) = token.env();
                let mut env = vec![(conf, path.as_os_str().to_owned())];
                env.extend(broker.pki().map(ca));
                env.push(("GATEWAY_PKCS11_URI", token.uri("device").into()));
                env
            }
            Self::Mosquitto { .. } => Vec::new(),
            Self::Quic { broker, .. } => vec![ca(broker.pki())],
        }
    }

    /// Cuts the gateway's path: its TCP connections dropped, or its QUIC path moved.
    pub fn cut(&self) {
        match self {
            Self::Mosquitto { proxy, .. } => proxy.cut(),
            Self::Quic { relay, .. } => relay.rebind().unwrap(),
        }
    }

    /// Stops the broker (SIGTERM: it saves its state) and starts it again.
    pub fn restart(&mut self) {
        match self {
            Self::Mosquitto { broker, .. } => {
                broker.stop();
                broker.restart().unwrap();
            }
            Self::Quic { broker, .. } => {
                broker.stop(Duration::from_secs(5));
                broker.restart().unwrap();
            }
        }
    }

    pub fn log(&self) -> String {
        match self {
            Self::Mosquitto { broker, .. } => broker.log(),
            Self::Quic { broker, .. } => broker.log(),
        }
    }
}
