//! The domain types both processes share: tasks and their ids, the task
//! file, validation, results.

pub mod task;
pub mod taskfile;
