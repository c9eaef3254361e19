//! Tests of the real `inference-engine` binary as a child process: startup guards, graceful
//! shutdown, and the `check` and `keys generate` commands.

// Test helpers fail the test at the line that broke; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod commands;
mod distributed;
mod durability;
mod guards;
mod logs;
mod runtimes;
mod shutdown;

use std::path::Path;

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_inference-engine"))
}

/// `inference-engine models inspect MODEL`'s report; fails the test when the command fails.
pub(crate) fn inspect_report(model: &Path) -> String {
    let output = std::process::Command::new(binary())
        .args(["models", "inspect"])
        .arg(model)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
