//! HTTP routes: thin handlers that parse, ask an actor, render JSON.

pub mod error;
pub mod orchestrator;
pub mod protocol;
pub mod worker;
