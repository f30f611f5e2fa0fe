//! With feature `tracing`, every report is also a `tracing` event (target `runner`).
//! Run: `cargo test --features tracing --test tracing_events`.

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

#[test]
fn reports_are_tracing_events_too() {
    let capture = Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, || {
        let mut runner = runner::Runner::builder()
            .debug(Some(true))
            .handle_sigint(false)
            .exception_handler(|_| {})
            .build();
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
    });
    let events = events.lock().unwrap();
    let slow = events
        .iter()
        .find(|e| e.2.starts_with("Executing <main task"));
    let slow = slow.unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!((slow.0, slow.1.as_str()), (Level::WARN, "runner"));
    let panic = events
        .iter()
        .find(|e| e.2.contains("unhandled panic during Runner shutdown"));
    assert_eq!(panic.map(|e| e.0), Some(Level::ERROR), "{events:?}");
}

struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("cleanup failed");
    }
}
