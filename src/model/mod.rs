//! The domain types both processes share: ids, tasks, statuses, the task
//! file (read strictly: [`strict_json`]), validation, results.

pub mod id;
pub mod result;
pub mod reuse;
pub mod status;
pub mod strict_json;
pub mod study;
pub mod task;
pub mod taskfile;
pub mod validate;

pub use crate::sim::KernelName;
pub use id::{AttemptId, IdError, TaskId, WorkerId, MAX_TASK_ID_LEN};
pub use result::{Echo, ResultBody, TaskResult};
pub use status::{AttemptEnd, RunStatus, TaskStatus};
pub use study::{check_study, task_parameter, ParamKind, TaskParameter, TASK_PARAMETERS};
pub use task::{
    study_of, test_kernels_enabled, unknown_fields, Priority, Task, TestKernel, Work, TEST_KERNEL_NAMES,
};
pub use validate::{describe, FieldError, Validator};
