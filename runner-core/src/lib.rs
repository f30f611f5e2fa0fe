//! The runtime layer of [`tokio-runner`](https://docs.rs/tokio-runner) (in code: `runner`):
//! Python's `asyncio.run()` and `asyncio.Runner` on tokio. Use it through that crate, which
//! re-exports all of this together with the `#[runner::main]` and `#[runner::test]` macros.
//!
//! ```
//! # use runner_core as runner;
//! let mut runner = runner_core::Runner::new();
//! assert_eq!(runner.run(async { 1 + 1 }).unwrap(), 2);
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod close;
mod context;
mod deadline;
mod debug;
mod error;
mod event_loop;
mod guarded;
mod local;
mod notify;
mod progress;
mod registry;
mod runner;
mod scope;
mod shared;
mod shutdown;
mod signal;
mod signal_state;
mod stop;
mod sync;
mod task;
mod task_state;
mod util;
mod vars;

#[doc(hidden)]
pub mod __private;

pub use crate::context::{Context, ContextVar, Scoped, Token};
pub use crate::debug::{default_exception_handler, Report, ReportKind, ShutdownFacts};
pub use crate::error::{ContextError, RunError, TaskError};
pub use crate::notify::notify_ready;
pub use crate::runner::{
    debug_enabled, run, Builder, IntoRuntime, Runner, DEFAULT_SHUTDOWN_REPORT_AFTER,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SLOW_CALLBACK_DURATION,
};
pub use crate::shutdown::shutdown_requested;
pub use crate::signal::{die_by_sigint, die_by_sigterm};
pub use crate::task::{
    at_close, cancelled, current_task, spawn, spawn_blocking, spawn_local, Cancelled, Task,
    TaskHandle,
};
