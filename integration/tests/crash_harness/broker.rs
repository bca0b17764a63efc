//! The crash proof's broker and the path to it: mosquitto behind the fault proxy (a cut drops
//! the TCP connections), or the `mqttv5` broker over QUIC behind a UDP relay (a cut moves the
//! relay's side of the path to a new port, as a NAT that rebinds). The subscriber and the
//! feeder reach either broker straight over TCP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::proxy::FaultProxy;
use integration::quic_broker::QuicBroker;
use integration::udp_relay::{PathShape, UdpRelay};

use super::gateway::Variant;

pub enum ProofBroker {
    Mosquitto {
        broker: Mosquitto,
        proxy: FaultProxy,
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
            ..MosquittoConfig::default()
        })
        .unwrap();
        let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], broker.port()))).unwrap();
        Self::Mosquitto { broker, proxy }
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
            Self::Mosquitto { proxy, .. } => proxy.url(),
            Self::Quic { relay, .. } => format!("quic://localhost:{}", relay.port()),
        }
    }

    /// The CA the gateway must trust, for QUIC.
    pub fn ca(&self) -> Option<&Path> {
        match self {
            Self::Mosquitto { .. } => None,
            Self::Quic { broker, .. } => Some(&broker.pki().ca),
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
