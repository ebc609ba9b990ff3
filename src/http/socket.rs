//! The socket under a request, for a response that must be able to end
//! its connection itself: a streamed answer (`/events`) whose client has
//! stopped reading is no longer polled by actix (its write buffer is
//! full), so the stream cannot end by returning; shutting the socket down
//! wakes the connection, whose next write fails, and actix drops it.
//!
//! [`remember`] is the server's `on_connect` hook: it keeps the socket in
//! the connection's data; [`ConnSocket::end`] ends it. The OS calls are in
//! [`crate::util::platform`].

use std::any::Any;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

use crate::util::platform::{self, RawSocket};

/// The socket of a connection (plain TCP or TLS over TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSocket(RawSocket);

/// A TLS connection as the server's `on_connect` sees it.
type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;

/// `HttpServer::on_connect` hook: keeps the connection's socket.
pub fn remember(conn: &dyn Any, data: &mut Extensions) {
    let socket = if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
        Some(platform::raw_socket(tcp))
    } else {
        conn.downcast_ref::<Tls>()
            .map(|tls| platform::raw_socket((**tls).get_ref().0))
    };
    if let Some(socket) = socket {
        data.insert(ConnSocket(socket));
    }
}

impl ConnSocket {
    /// Caps what the kernel holds unsent for this connection at about
    /// `bytes`, so a client that stops reading is seen as stopped within
    /// seconds, not after megabytes.
    pub fn limit_send_buffer(&self, bytes: usize) {
        platform::limit_send_buffer(self.0, bytes);
    }

    /// Ends the connection: what it holds unsent is dropped (a reset, not
    /// a slow close), and actix, woken by the shutdown, drops it.
    ///
    /// Call it only while the response that came from this connection is
    /// still alive: actix owns the socket until then, and once that
    /// response is dropped the number may be another connection's.
    pub fn end(&self) {
        platform::end_connection(self.0);
    }
}
