//! HTTP routes: thin handlers that parse, ask an actor, render JSON.
//! [`orchestrator`] is the orchestrator's REST API, [`worker`] a worker
//! node's, [`files`] the orchestrator's file records and known ids;
//! [`protocol`] holds the wire types the two exchange (the one
//! thing both sides share), [`error`] the one JSON error shape and
//! [`limits`] what one client may cost either server, [`auth`] the token
//! check both servers wrap around their routes. [`prometheus`] and
//! [`worker_prometheus`] serve `GET /metrics/prometheus` on each;
//! [`purge`] is the orchestrator's `POST /admin/purge`; [`dashboard`] is
//! the orchestrator's live page and its event stream.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod files;
pub mod limits;
pub mod orchestrator;
pub mod prometheus;
pub mod protocol;
pub mod purge;
pub mod worker;
pub mod worker_prometheus;
