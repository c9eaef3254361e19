//! Tests of the real `inference-engine` binary as a child process: startup guards, graceful
//! shutdown, and the `check` and `keys generate` commands.

// Test helpers fail the test at the line that broke; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod commands;
mod distributed;
mod guards;
mod logs;
mod runtimes;
mod shutdown;

use std::path::Path;

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_inference-engine"))
}
