//! The one table of attribute keys. Parsing, the "unknown key" message and the
//! main-only / test-only errors all read it, so a key is added in exactly one place.

use std::fmt;

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Macro {
    /// `#[runner::main]`
    Main,
    /// `#[runner::test]`
    Test,
}

impl Macro {
    /// The other attribute, for "only valid on" messages.
    pub(crate) fn other(self) -> Macro {
        match self {
            Macro::Main => Macro::Test,
            Macro::Test => Macro::Main,
        }
    }
}

impl fmt::Display for Macro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Macro::Main => "#[runner::main]",
            Macro::Test => "#[runner::test]",
        })
    }
}

/// A key's identity, independent of how it is spelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Key {
    Debug,
    LoopFactory,
    Flavor,
    WorkerThreads,
    StartPaused,
    Name,
    ShutdownTimeout,
    ShutdownReportAfter,
    HandleSigint,
    HandleSigterm,
    GracePeriod,
    DrainDelay,
    SlowCallbackDuration,
    ExceptionHandler,
    Timeout,
    Crate,
}

/// What a key's value must look like; `value.rs` parses each kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// `true` or `false`.
    Bool,
    /// Any expression except a literal: a path or a closure returning a runtime.
    Factory,
    /// Any expression except a literal: a path or a closure taking `&Report`.
    Handler,
    /// `"current_thread"`, `"multi_thread"` or `"local"`.
    Flavor,
    /// A string with something besides whitespace: the runtime's name.
    Name,
    /// A positive integer literal.
    Count,
    /// A string such as `"500ms"`, `"1.5s"` or `"2m"`.
    Duration,
    /// A path in a string, such as `"my::runner"`.
    Path,
}

/// Where a key may be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scope {
    Both,
    Only(Macro),
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct KeySpec {
    pub(crate) key: Key,
    pub(crate) name: &'static str,
    pub(crate) scope: Scope,
    pub(crate) kind: Kind,
    /// What to write, quoted in error messages.
    pub(crate) example: &'static str,
}

impl KeySpec {
    pub(crate) fn applies_to(&self, kind: Macro) -> bool {
        match self.scope {
            Scope::Both => true,
            Scope::Only(only) => only == kind,
        }
    }
}

/// Every key, in the order the docs and the "valid keys" list show them.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec {
        key: Key::Debug,
        name: "debug",
        scope: Scope::Both,
        kind: Kind::Bool,
        example: "debug = true",
    },
    KeySpec {
        key: Key::LoopFactory,
        name: "loop_factory",
        scope: Scope::Both,
        kind: Kind::Factory,
        example: "loop_factory = my_runtime",
    },
    KeySpec {
        key: Key::Flavor,
        name: "flavor",
        scope: Scope::Both,
        kind: Kind::Flavor,
        example: "flavor = \"multi_thread\"",
    },
    KeySpec {
        key: Key::WorkerThreads,
        name: "worker_threads",
        scope: Scope::Both,
        kind: Kind::Count,
        example: "worker_threads = 4",
    },
    KeySpec {
        key: Key::StartPaused,
        name: "start_paused",
        scope: Scope::Both,
        kind: Kind::Bool,
        example: "start_paused = true",
    },
    KeySpec {
        key: Key::Name,
        name: "name",
        scope: Scope::Both,
        kind: Kind::Name,
        example: "name = \"my-runtime\"",
    },
    KeySpec {
        key: Key::ShutdownTimeout,
        name: "shutdown_timeout",
        scope: Scope::Both,
        kind: Kind::Duration,
        example: "shutdown_timeout = \"30s\"",
    },
    KeySpec {
        key: Key::ShutdownReportAfter,
        name: "shutdown_report_after",
        scope: Scope::Both,
        kind: Kind::Duration,
        example: "shutdown_report_after = \"5s\"",
    },
    KeySpec {
        key: Key::HandleSigint,
        name: "handle_sigint",
        scope: Scope::Only(Macro::Main),
        kind: Kind::Bool,
        example: "handle_sigint = false",
    },
    KeySpec {
        key: Key::HandleSigterm,
        name: "handle_sigterm",
        scope: Scope::Only(Macro::Main),
        kind: Kind::Bool,
        example: "handle_sigterm = true",
    },
    KeySpec {
        key: Key::GracePeriod,
        name: "grace_period",
        scope: Scope::Only(Macro::Main),
        kind: Kind::Duration,
        example: "grace_period = \"25s\"",
    },
    KeySpec {
        key: Key::DrainDelay,
        name: "drain_delay",
        scope: Scope::Only(Macro::Main),
        kind: Kind::Duration,
        example: "drain_delay = \"5s\"",
    },
    KeySpec {
        key: Key::SlowCallbackDuration,
        name: "slow_callback_duration",
        scope: Scope::Both,
        kind: Kind::Duration,
        example: "slow_callback_duration = \"50ms\"",
    },
    KeySpec {
        key: Key::ExceptionHandler,
        name: "exception_handler",
        scope: Scope::Both,
        kind: Kind::Handler,
        example: "exception_handler = my_handler",
    },
    KeySpec {
        key: Key::Timeout,
        name: "timeout",
        scope: Scope::Only(Macro::Test),
        kind: Kind::Duration,
        example: "timeout = \"5s\"",
    },
    KeySpec {
        key: Key::Crate,
        name: "crate",
        scope: Scope::Both,
        kind: Kind::Path,
        example: "crate = \"my::runner\"",
    },
];

/// The row spelled `name`, if any.
pub(crate) fn lookup(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.name == name)
}

/// Keys of `#[tokio::main]` and `#[tokio::test]` that runner does not take, each with the
/// error that says why and what to write instead (rather than "unknown attribute").
const NOT_TAKEN: &[(&str, &str)] = &[(
    "unhandled_panic",
    "`unhandled_panic` is not supported: tokio has it only under `--cfg tokio_unstable`. \
     Remove it: a task that panics does not stop the runtime, as with tokio's default \
     `\"ignore\"`, and its `Task` awaits to a `runner::TaskError` whose `is_panic()` is \
     true; for `\"shutdown_runtime\"`, await the task and pass `err.into_panic()` to \
     `std::panic::resume_unwind`",
)];

/// The error for a tokio key that runner does not take, if `name` is one.
pub(crate) fn not_taken(name: &str) -> Option<&'static str> {
    NOT_TAKEN
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, why)| *why)
}

/// `"debug, loop_factory, ..."`: the keys valid on `kind`.
pub(crate) fn valid_keys(kind: Macro) -> String {
    let names: Vec<&str> = KEYS
        .iter()
        .filter(|spec| spec.applies_to(kind))
        .map(|spec| spec.name)
        .collect();
    names.join(", ")
}

/// The valid key closest to a misspelled one, if it is close enough to be a typo.
pub(crate) fn suggest(kind: Macro, name: &str) -> Option<&'static str> {
    closest(
        name,
        KEYS.iter()
            .filter(|spec| spec.applies_to(kind))
            .map(|spec| spec.name),
    )
}

/// The candidate within two edits of `word` (one for short words), nearest first.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = if word.len() <= 4 { 1 } else { 2 };
    candidates
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, treating `-` as `_` (`multi-thread` is one typo from nothing).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys_lists_each_macros_keys_in_table_order() {
        assert_eq!(
            valid_keys(Macro::Main),
            "debug, loop_factory, flavor, worker_threads, start_paused, name, \
             shutdown_timeout, shutdown_report_after, handle_sigint, handle_sigterm, \
             grace_period, drain_delay, slow_callback_duration, exception_handler, crate"
        );
        assert_eq!(
            valid_keys(Macro::Test),
            "debug, loop_factory, flavor, worker_threads, start_paused, name, \
             shutdown_timeout, shutdown_report_after, slow_callback_duration, \
             exception_handler, timeout, crate"
        );
    }

    #[test]
    fn near_misses_get_a_suggestion() {
        assert_eq!(
            suggest(Macro::Main, "worker_thread"),
            Some("worker_threads")
        );
        assert_eq!(suggest(Macro::Main, "Debug"), Some("debug"));
        assert_eq!(suggest(Macro::Test, "time_out"), Some("timeout"));
        assert_eq!(
            suggest(Macro::Main, "shutdown-timeout"),
            Some("shutdown_timeout")
        );
        assert_eq!(
            suggest(Macro::Main, "timeout"),
            None,
            "test-only keys are not offered"
        );
        assert_eq!(suggest(Macro::Main, "bogus"), None);
        assert_eq!(suggest(Macro::Main, "dbg"), None);
        assert_eq!(
            closest(
                "multi-thread",
                ["current_thread", "multi_thread"].into_iter()
            ),
            Some("multi_thread")
        );
    }

    #[test]
    fn tokio_keys_runner_does_not_take_are_not_in_the_table() {
        for (key, why) in NOT_TAKEN {
            assert!(lookup(key).is_none(), "{key}");
            assert!(
                why.starts_with(&format!("`{key}` is not supported")),
                "{why}"
            );
        }
        assert!(not_taken("unhandled_panic").is_some());
        assert!(not_taken("name").is_none());
    }

    #[test]
    fn every_example_starts_with_its_key() {
        for spec in KEYS {
            assert!(spec.example.starts_with(&format!("{} = ", spec.name)));
            assert_eq!(lookup(spec.name).map(|s| s.key), Some(spec.key));
        }
    }
}
