//! With feature `tracing`, the default exception handler sends each report to `tracing`
//! (target `runner`) when a subscriber is set, and to stderr only when none is.
//! Run: `cargo test --features tracing --test tracing_events`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use runner::ReportKind;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event: (level, target, message, the `kind` field).
type Seen = (Level, String, String, String);

/// Every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

/// The `message` and `kind` fields of an event.
#[derive(Default)]
struct Message(String, String);
impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "kind" {
            self.1 = value.to_owned();
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message::default();
        event.record(&mut message);
        let meta = event.metadata();
        self.0.lock().unwrap().push((
            *meta.level(),
            meta.target().to_owned(),
            message.0,
            message.1,
        ));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// A debug-mode run that makes two reports: a slow poll of the main task (warn) and a task
/// that panics while `close()` cancels it (error).
fn run_with_two_reports(builder: runner::Builder) {
    let mut runner = builder.debug(Some(true)).handle_sigint(false).build();
    runner
        .run(async {
            // sleep: a poll that blocks the thread, for a slow-poll report.
            std::thread::sleep(Duration::from_millis(120));
            let guard = PanicOnDrop;
            runner::spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            });
        })
        .unwrap();
    runner.close();
}

const SLOW: &str = "Executing <main task";
const PANIC: &str = "unhandled panic during Runner shutdown";

#[test]
fn with_a_subscriber_reports_are_tracing_events_at_their_level() {
    common::watchdog(common::TEST_LIMIT);
    let capture = Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, || run_with_two_reports(runner::Runner::builder()));
    let events = events.lock().unwrap();
    let slow = events.iter().find(|e| e.2.starts_with(SLOW));
    let slow = slow.unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!((slow.0, slow.1.as_str()), (Level::WARN, "runner"));
    let panic = events.iter().find(|e| e.2.contains(PANIC));
    assert_eq!(
        panic.map(|e| (e.0, e.1.as_str())),
        Some((Level::ERROR, "runner")),
        "{events:?}"
    );
}

#[test]
fn with_a_subscriber_reports_do_not_also_go_to_stderr() {
    common::watchdog(common::TEST_LIMIT);
    let (_, stderr) = common::run_child("child_reports_with_a_subscriber", &[]);
    assert!(
        stderr.contains("child: both reports were tracing events"),
        "{stderr}"
    );
    assert!(!stderr.contains(SLOW), "{stderr}");
    assert!(!stderr.contains(PANIC), "{stderr}");
}

#[test]
#[ignore = "child process of with_a_subscriber_reports_do_not_also_go_to_stderr"]
fn child_reports_with_a_subscriber() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let capture = Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, || run_with_two_reports(runner::Runner::builder()));
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| e.2.starts_with(SLOW)), "{events:?}");
    assert!(events.iter().any(|e| e.2.contains(PANIC)), "{events:?}");
    eprintln!("child: both reports were tracing events");
}

#[test]
fn without_a_subscriber_reports_go_to_stderr() {
    common::watchdog(common::TEST_LIMIT);
    let (_, stderr) = common::run_child("child_reports_without_a_subscriber", &[]);
    assert!(stderr.contains(&format!("runner: {SLOW}")), "{stderr}");
    assert!(stderr.contains(&format!("runner: {PANIC}")), "{stderr}");
}

#[test]
#[ignore = "child process of without_a_subscriber_reports_go_to_stderr"]
fn child_reports_without_a_subscriber() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    run_with_two_reports(runner::Runner::builder());
}

#[test]
fn a_custom_exception_handler_gets_every_report_and_tracing_none() {
    common::watchdog(common::TEST_LIMIT);
    let capture = Capture::default();
    let events = capture.0.clone();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let sink = handled.clone();
    tracing::subscriber::with_default(capture, || {
        run_with_two_reports(
            runner::Runner::builder().exception_handler(move |r: &runner::Report| {
                sink.lock().unwrap().push(r.to_string())
            }),
        )
    });
    let handled = handled.lock().unwrap();
    assert!(handled.iter().any(|r| r.starts_with(SLOW)), "{handled:?}");
    assert!(handled.iter().any(|r| r.contains(PANIC)), "{handled:?}");
    assert_eq!(
        *events.lock().unwrap(),
        [],
        "the handler replaces the default sinks"
    );
}

#[test]
fn a_custom_handler_can_pass_reports_on_to_the_default_one() {
    common::watchdog(common::TEST_LIMIT);
    let capture = Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, || {
        run_with_two_reports(
            runner::Runner::builder().exception_handler(runner::default_exception_handler),
        )
    });
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| e.2.starts_with(SLOW)), "{events:?}");
    assert!(events.iter().any(|e| e.2.contains(PANIC)), "{events:?}");
}

struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("cleanup failed");
    }
}

/// What README promises: "panics at error level, the rest at warn".
fn level_of(kind: ReportKind) -> Level {
    match kind {
        ReportKind::PanicDuringShutdown
        | ReportKind::PanicNeverRetrieved
        | ReportKind::FinalizerPanicked => Level::ERROR,
        _ => Level::WARN,
    }
}

/// Every kind a Runner on this (non-main) thread can make: all but `MainTaskDropped`, which
/// takes a signal on a main thread (`a_main_task_dropped_by_ctrl_c_is_a_warn_event`).
const IN_PROCESS_KINDS: [ReportKind; 8] = [
    ReportKind::SlowPoll,
    ReportKind::PendingAtClose,
    ReportKind::PanicDuringShutdown,
    ReportKind::PanicNeverRetrieved,
    ReportKind::FinalizerPanicked,
    ReportKind::ShutdownTimeout,
    ReportKind::BlockingAbandoned,
    ReportKind::ClosedInsideRuntime,
];

/// Makes one report of each of `IN_PROCESS_KINDS`, on this thread.
fn make_every_in_process_kind() {
    let mut r = runner::Runner::builder()
        .debug(Some(true))
        .handle_sigint(false)
        .slow_callback_duration(Duration::from_millis(20))
        .shutdown_timeout(Duration::from_millis(200))
        .build();
    r.run(async {
        // SlowPoll. sleep: a poll that blocks the thread.
        std::thread::sleep(Duration::from_millis(40));
        // PanicNeverRetrieved: the handle is dropped first; the task's poll reports the
        // panic (current-thread loop: before this task runs again).
        let (unwound, has_unwound) = tokio::sync::oneshot::channel::<()>();
        drop(runner::spawn(async move {
            let _unwound = unwound; // dropped while the panic unwinds
            panic!("nobody awaits this");
        }));
        let _ = has_unwound.await;
        // PendingAtClose and PanicDuringShutdown.
        let guard = PanicOnDrop;
        runner::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        // ShutdownTimeout: observes the cancel and ignores it.
        let (observing, is_observing) = tokio::sync::oneshot::channel();
        runner::spawn(async move {
            let cancelled = runner::cancelled();
            observing.send(()).unwrap();
            cancelled.await;
            std::future::pending::<()>().await
        });
        is_observing.await.unwrap();
        // FinalizerPanicked.
        runner::at_close(|| async { panic!("finalizer failed") });
        // BlockingAbandoned. sleep: blocking work that outlasts the 0.2 s timeout.
        drop(runner::spawn_blocking(|| {
            std::thread::sleep(Duration::from_secs(2))
        }));
    })
    .unwrap();
    r.close();
    // ClosedInsideRuntime: a Runner closed inside a foreign runtime's block_on.
    let mut inside = runner::Runner::builder()
        .debug(Some(false))
        .handle_sigint(false)
        .build();
    inside.get_loop().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async move { inside.close() });
}

#[test]
fn every_report_kind_is_an_event_at_its_level() {
    common::watchdog(common::TEST_LIMIT);
    let capture = Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, make_every_in_process_kind);
    let events = events.lock().unwrap();
    for kind in IN_PROCESS_KINDS {
        let name = format!("{kind:?}");
        let of_kind: Vec<_> = events.iter().filter(|e| e.3 == name).collect();
        assert!(!of_kind.is_empty(), "no {name} event in {events:#?}");
        for (level, target, message, _) in of_kind {
            assert_eq!(
                (*level, target.as_str()),
                (level_of(kind), "runner"),
                "{name}: {message}"
            );
            assert!(!message.is_empty(), "{name} without a message");
        }
    }
}

const MAIN_TASK_DROPPED: &str = r#"//! `#[runner::main]`-like program with runner's `tracing` feature and a subscriber that
//! prints every event on stdout; its main task is dropped by Ctrl-C in debug mode.
use std::fmt::Debug;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

struct Print;

#[derive(Default)]
struct Fields(String, String);
impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "kind" {
            self.1 = value.to_owned();
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Print {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        println!("event: {} {} {}: {}", meta.level(), meta.target(), fields.1, fields.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn main() {
    tracing::subscriber::set_global_default(Print).expect("no subscriber yet");
    let mut runner = rt::Runner::builder().debug(Some(true)).build();
    let result = runner.run(async {
        println!("ready");
        // sleep: work that outlasts the test, which ends it with SIGINT.
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    });
    println!("result: {result:?}");
    runner.close();
    if let Err(rt::RunError::Interrupted) = result {
        rt::die_by_sigint();
    }
}
"#;

/// The one kind that takes a signal on a process's main thread: a fixture crate with
/// runner's `tracing` feature, run as a child and sent SIGINT.
#[test]
fn a_main_task_dropped_by_ctrl_c_is_a_warn_event() {
    use common::child::{Proc, Start};
    use common::fixture;
    common::watchdog(common::FIXTURE_TEST_LIMIT);
    let dependencies = format!(
        "rt = {{ package = \"tokio-runner\", path = \"{}\", features = [\"tracing\"] }}\n\
         tracing = {{ version = \"0.1\", default-features = false, features = [\"std\"] }}\n\
         tokio = {{ version = \"1.54\", default-features = false, features = [\"time\", \"net\"] }}",
        fixture::checkout()
    );
    let dir = fixture::write_crate(
        "runner_tracing",
        &dependencies,
        &[("src/bin/main_task_dropped.rs", MAIN_TASK_DROPPED)],
    );
    let bin = fixture::build_bin(&dir, "main_task_dropped");
    let mut p = Proc::program(&bin, "main_task_dropped", &[], Start::Default, &[]);
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(5));
    p.assert_printed("result: Err(Interrupted)");
    let dropped = p
        .seen
        .iter()
        .find(|l| l.contains(" MainTaskDropped: "))
        .unwrap_or_else(|| panic!("no MainTaskDropped event:\n{}", p.seen.join("\n")))
        .clone();
    assert!(
        dropped.starts_with("event: WARN runner MainTaskDropped: "),
        "{dropped}"
    );
    assert_eq!(level_of(ReportKind::MainTaskDropped), Level::WARN);
}
