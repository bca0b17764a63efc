//! Enhanced authentication (section 4.12): the application's [`Authenticator`] answers the
//! server's challenges; the session checks the method and the server's proof.

use bytes::Bytes;

use super::{ProtocolViolation, RequestError, Session};
use crate::packet::{Auth, AuthProperties, Packet, ReasonCode};

/// Enhanced authentication, when the application supplied it, and the method of the current
/// connection.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    pub(super) authenticator: Option<Box<dyn Authenticator>>,
    /// The Authentication Method the current connection's CONNECT carried: every AUTH on the
    /// connection uses it [MQTT-4.12.0-5, MQTT-4.12.1-1].
    pub(super) method: Option<String>,
}

/// Enhanced authentication (section 4.12) supplied by the application: SCRAM, Kerberos, a
/// token exchange. The session sends what it returns and checks what the server says.
pub trait Authenticator: Send + std::fmt::Debug {
    /// The Authentication Method, sent in CONNECT and in every AUTH.
    fn method(&self) -> &str;
    /// The Authentication Data to start with, in CONNECT or in a re-authentication.
    fn start(&mut self) -> Result<Option<Bytes>, AuthError>;
    /// The answer to a challenge (AUTH with 0x18 Continue authentication).
    fn challenge(&mut self, data: Option<&Bytes>) -> Result<Option<Bytes>, AuthError>;
    /// The server accepted (CONNACK or AUTH with Success); checks its final data, if any.
    fn success(&mut self, data: Option<&Bytes>) -> Result<(), AuthError>;
    /// The credential the next exchange is to prove: before each CONNECT, the attempt's
    /// user name and password (a client's credential provider gives a fresh one), and before
    /// a re-authentication that replaces an expiring credential, the new one. An
    /// authenticator whose data is a token (JWT, OAuth) sends it from
    /// [`start`](Authenticator::start); the default ignores it.
    fn credential(&mut self, _username: Option<&str>, _password: Option<&[u8]>) {}
}

/// An authenticator's refusal: the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enhanced authentication failed: {0}")]
pub struct AuthError(pub String);

impl Session {
    /// Uses enhanced authentication: its method and data go in CONNECT, and AUTH from the
    /// server is answered through it.
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.auth.authenticator = Some(authenticator);
    }

    /// Gives the authenticator, if there is one, the credential of the next exchange
    /// ([`Authenticator::credential`]).
    pub fn give_credential(&mut self, username: Option<&str>, password: Option<&[u8]>) {
        if let Some(auth) = self.auth.authenticator.as_mut() {
            auth.credential(username, password);
        }
    }

    /// Whether the current connection authenticated with an Authentication Method, so that
    /// it can re-authenticate in place ([`Session::reauthenticate`]).
    pub fn uses_enhanced_auth(&self) -> bool {
        self.connection.is_some() && self.auth.method.is_some()
    }

    /// Checks that a server packet names the method CONNECT carried [MQTT-4.12.0-5] and
    /// returns the authenticator (still of that method).
    pub(super) fn authenticator_for(
        &mut self,
        method: Option<&str>,
    ) -> Result<&mut Box<dyn Authenticator>, ProtocolViolation> {
        let connected = self
            .auth
            .method
            .as_deref()
            .ok_or(ProtocolViolation::UnexpectedAuth)?;
        if method != Some(connected) {
            return Err(ProtocolViolation::AuthMethodMismatch);
        }
        let auth = self
            .auth
            .authenticator
            .as_mut()
            .ok_or(ProtocolViolation::UnexpectedAuth)?;
        if auth.method() != connected {
            return Err(ProtocolViolation::AuthFailed(AuthError(format!(
                "the authenticator's method {:?} is not the connection's {connected:?}",
                auth.method()
            ))));
        }
        Ok(auth)
    }

    pub(super) fn auth_packet(
        reason_code: ReasonCode,
        method: String,
        data: Option<Bytes>,
    ) -> Packet {
        let mut packet = Auth {
            reason_code,
            properties: AuthProperties::default(),
        };
        packet.properties.authentication_method = Some(method);
        packet.properties.authentication_data = data;
        Packet::Auth(packet)
    }

    /// AUTH from the server: a challenge is answered with the authenticator's response
    /// [MQTT-4.12.0-3]; Success ends a re-authentication.
    pub fn handle_auth(&mut self, packet: Auth) -> Result<(), ProtocolViolation> {
        let props = packet.properties;
        let auth = self.authenticator_for(props.authentication_method.as_deref())?;
        match packet.reason_code {
            ReasonCode::ContinueAuthentication => {
                let data = auth
                    .challenge(props.authentication_data.as_ref())
                    .map_err(ProtocolViolation::AuthFailed)?;
                let method = auth.method().to_owned();
                // The same method as CONNECT [MQTT-4.12.0-5]: `authenticator_for` checked it.
                let answer = Self::auth_packet(ReasonCode::ContinueAuthentication, method, data);
                // An answer the server cannot take would leave the exchange waiting forever.
                self.codec.encoded_len(&answer).map_err(|error| {
                    ProtocolViolation::AuthFailed(AuthError(format!(
                        "the authenticator's answer cannot be sent: {error}"
                    )))
                })?;
                self.out.pending.send.push(answer);
                Ok(())
            }
            ReasonCode::Success => auth
                .success(props.authentication_data.as_ref())
                .map_err(ProtocolViolation::AuthFailed),
            _ => Err(ProtocolViolation::UnexpectedAuth),
        }
    }

    /// Starts a re-authentication on the current connection, with the method its CONNECT
    /// carried [MQTT-4.12.1-1]; none when CONNECT carried no method [MQTT-4.12.0-7].
    pub fn reauthenticate(&mut self) -> Result<(), RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        if self.options.protocol == crate::packet::ProtocolVersion::V311 {
            return Err(RequestError::NeedsV5("re-authentication"));
        }
        let connected = self
            .auth
            .method
            .clone()
            .ok_or(RequestError::NoAuthenticator)?;
        let auth = self
            .auth
            .authenticator
            .as_mut()
            .ok_or(RequestError::NoAuthenticator)?;
        if auth.method() != connected {
            return Err(RequestError::AuthMethodChanged {
                connected,
                now: auth.method().to_owned(),
            });
        }
        let data = auth.start().map_err(RequestError::Auth)?;
        let packet = Self::auth_packet(ReasonCode::ReAuthenticate, connected, data);
        // Refused here, where it is made, rather than dropped at the socket.
        self.codec.encoded_len(&packet)?;
        self.out.pending.send.push(packet);
        Ok(())
    }
}
