//! Tools for people (`orquesta gen | validate | schema | submit | status |
//! ping | completions`): one file per subcommand, plus the pieces they share
//! (the HTTP client, aligned tables, placing files atomically).

pub mod client;
pub mod completions;
pub mod gen;
pub mod interactive;
pub mod ping;
pub mod place;
pub mod schema;
pub mod status;
pub mod submit;
pub mod table;
pub mod validate;
