//! How a test starts a program as PID 1 of a new PID namespace (a container without an
//! init), and what it does on a machine where it cannot.
//!
//! As root, `unshare --pid --fork`. Without root, an unprivileged user namespace gives the
//! same: `unshare --user --map-root-user --pid --fork` (the program is root of its own user
//! namespace and PID 1 of its PID namespace; signals sent from outside reach it as they would
//! reach a container's PID 1). Where neither works (no `unshare`, user namespaces turned off
//! by `sysctl user.max_user_namespaces=0` or a container's seccomp profile), the tests skip
//! with the reason printed, and fail under `CI=true` (see `skip`).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The ways to make a PID namespace, tried in this order.
const WAYS: [&[&str]; 2] = [
    &["--pid", "--fork", "--kill-child"],
    &[
        "--user",
        "--map-root-user",
        "--pid",
        "--fork",
        "--kill-child",
    ],
];

/// A command `unshare ARGS PROGRAM ...` that starts PROGRAM as PID 1 of a new PID namespace,
/// in the first way that works on this machine (tried once per test process). `None`: no way
/// works; the calling test has been skipped (reason printed) and should return. Under
/// `CI=true` that panics instead.
#[track_caller]
pub fn pid1_command() -> Option<Command> {
    static WAY: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    match WAY.get_or_init(find_a_way) {
        Ok(args) => {
            let mut cmd = Command::new("unshare");
            cmd.args(*args);
            Some(cmd)
        }
        Err(why) => {
            // The whole reason once per test process, then a pointer to it.
            static TOLD: AtomicBool = AtomicBool::new(false);
            if TOLD.swap(true, Ordering::Relaxed) && !super::skip::in_ci() {
                super::skip::skip("no PID namespace can be made here (why: printed above)");
            } else {
                super::skip::skip(why);
            }
            None
        }
    }
}

/// The first way of `WAYS` that runs `true` as PID 1, or why none does.
fn find_a_way() -> Result<&'static [&'static str], String> {
    let mut failures = Vec::new();
    for args in WAYS {
        let tried = format!("`unshare {}`", args.join(" "));
        match Command::new("unshare").args(args).arg("true").output() {
            Ok(out) if out.status.success() => return Ok(args),
            Ok(out) => failures.push(format!(
                "{tried}: {} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            )),
            Err(e) => failures.push(format!("{tried}: {e}")),
        }
    }
    Err(format!(
        "no PID namespace can be made here, so a program cannot be PID 1: {}. Run as root, or \
         where unprivileged user namespaces are allowed (sysctl user.max_user_namespaces > 0)",
        failures.join("; ")
    ))
}
