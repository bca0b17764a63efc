//! MQTT packets over a plain TCP stream, for tests that play one side of the protocol by hand
//! (a misbehaving broker, a client that withholds its acks).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use mooring::packet::{Codec, Decoded, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TCP stream that sends and receives whole packets with Mooring's codec.
#[derive(Debug)]
pub struct PacketStream {
    /// The socket, for writing raw bytes or shutting it down.
    pub stream: TcpStream,
    buf: BytesMut,
}

impl PacketStream {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        Codec::default()
            .encode(packet, &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stream.write_all(&out).await
    }

    /// The next packet; `Ok(None)` when the peer closed the connection, an error of kind
    /// `TimedOut` when nothing complete came within `wait`, `InvalidData` for a malformed one.
    pub async fn recv(&mut self, wait: Duration) -> io::Result<Option<Packet>> {
        let read = async {
            loop {
                match Codec::default().decode(&mut self.buf) {
                    Ok(Decoded::Packet(packet)) => return Ok(Some(packet)),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                    }
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Ok(None);
                }
            }
        };
        tokio::time::timeout(wait, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no packet in time"))?
    }
}
