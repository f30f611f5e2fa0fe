//! `runner`: Python's `asyncio.run()` and `asyncio.Runner` for tokio.
#![deny(missing_docs)]

pub use runner_core::*;
pub use runner_macros::{main, test};
