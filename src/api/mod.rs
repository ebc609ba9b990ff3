//! HTTP routes: thin handlers that parse, ask an actor, render JSON.
//! [`orchestrator`] is the orchestrator's REST API, [`worker`] a worker
//! node's; [`protocol`] holds the wire types the two exchange (the one
//! thing both sides share), [`error`] the one JSON error shape and
//! [`limits`] what one client may cost either server, [`auth`] the token
//! check both servers wrap around their routes; [`dashboard`] is the
//! orchestrator's live page and its event stream.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod limits;
pub mod orchestrator;
pub mod protocol;
pub mod worker;
