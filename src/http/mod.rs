//! What both servers wrap around their routes: the bearer-token check
//! ([`auth`]), the guard against web pages of other origins ([`browser`]),
//! the one JSON error shape and its status codes ([`error`]), and what one
//! client may cost ([`limits`]: body sizes, slow bodies, connections), and
//! the socket under a request for a stream that must end itself ([`socket`]).

pub mod auth;
pub mod browser;
pub mod error;
pub mod limits;
pub mod socket;
