//! With feature `tracing`, the default exception handler sends each report to `tracing`
//! (target `runner`) when a subscriber is set, and to stderr only when none is.
//! Run: `cargo test --features tracing --test tracing_events`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(Level, String, String)>>>);

struct Message(String);
impl Visit for Message {
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
        let mut message = Message(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((*meta.level(), meta.target().to_owned(), message.0));
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
    let (_, stderr) = common::run_child("child_reports_without_a_subscriber", &[]);
    assert!(stderr.contains(&format!("runner: {SLOW}")), "{stderr}");
    assert!(stderr.contains(&format!("runner: {PANIC}")), "{stderr}");
}

#[test]
#[ignore = "child process of without_a_subscriber_reports_go_to_stderr"]
fn child_reports_without_a_subscriber() {
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    run_with_two_reports(runner::Runner::builder());
}

#[test]
fn a_custom_exception_handler_gets_every_report_and_tracing_none() {
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
