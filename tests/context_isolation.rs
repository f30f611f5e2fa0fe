//! Context variables never leak between plain tokio tasks (DESIGN.md "Plain tokio tasks"):
//! a `set` in a plain task is refused with a report, `ContextVar::scope` and
//! `Context::scope` give a future a context of its own wherever it is polled. Then the
//! server case for real: an axum service whose middleware gives each request its id, three
//! requests in flight at once over HTTP/1.1 and over HTTP/2 (hyper's client), on
//! current-thread and multi-thread loops.

mod common;

use std::future::pending;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runner::{Builder, Context, ContextVar, ReportKind, Runner};

use common::Reports;

static RID: ContextVar<u64> = ContextVar::new("rid");

#[derive(Clone, Copy, Debug)]
enum Loop {
    CurrentThread,
    MultiThread(usize),
}

const LOOPS: [Loop; 4] = [
    Loop::CurrentThread,
    Loop::MultiThread(1),
    Loop::MultiThread(2),
    Loop::MultiThread(4),
];

fn builder(kind: Loop) -> Builder {
    let b = Runner::builder().handle_sigint(false).debug(Some(false));
    match kind {
        Loop::CurrentThread => b,
        Loop::MultiThread(workers) => b.loop_factory(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }),
    }
}

fn refusals(reports: &Reports) -> Vec<runner::Report> {
    reports
        .take()
        .into_iter()
        .filter(|r| r.kind() == ReportKind::ContextSetRefused)
        .collect()
}

#[test]
fn a_value_set_in_one_plain_task_is_never_seen_by_another() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(kind)).build();
        let (a, b) = runner
            .run(async {
                // The issue's own example.
                let a = tokio::spawn(async {
                    RID.set(1);
                    tokio::task::yield_now().await;
                    RID.get()
                });
                let b = tokio::spawn(async {
                    tokio::task::yield_now().await;
                    RID.get()
                });
                (a.await.unwrap(), b.await.unwrap())
            })
            .unwrap();
        runner.close();
        assert_eq!(b, None, "{kind:?}: task b saw task a's value");
        assert_eq!(a, None, "{kind:?}: a set in a plain task was not refused");
        let refused = refusals(&reports);
        assert_eq!(refused.len(), 1, "{kind:?}: {refused:?}");
        let report = &refused[0];
        let at = report.location().expect("the call site");
        assert_eq!(at.file(), "tests/context_isolation.rs", "{kind:?}");
        for needle in [
            "ContextVar \"rid\" was not set at tests/context_isolation.rs:",
            "plain tokio task",
            "VAR.scope(value, fut)",
            "runner::spawn",
        ] {
            assert!(report.message().contains(needle), "{kind:?}: {report}");
        }
    }
}

#[test]
fn plain_tasks_polled_by_close_do_not_share_a_value_either() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports.install(builder(Loop::CurrentThread)).build();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    runner
        .run(async move {
            for writes in [true, false] {
                let seen_tx = seen_tx.clone();
                let (made, ready) = tokio::sync::oneshot::channel();
                // Plain tasks that clean up when the close resolves their `cancelled()`:
                // the close polls them, on this thread.
                tokio::spawn(async move {
                    let mut stop = runner::cancelled();
                    made.send(()).unwrap();
                    (&mut stop).await;
                    if writes {
                        RID.set(5);
                    }
                    tokio::task::yield_now().await;
                    tokio::task::yield_now().await;
                    seen_tx.send((writes, RID.get())).unwrap();
                    drop(stop);
                });
                ready.await.unwrap();
            }
        })
        .unwrap();
    runner.close();
    let mut seen: Vec<_> = seen.try_iter().collect();
    seen.sort();
    assert_eq!(seen, [(false, None), (true, None)]);
    assert_eq!(refusals(&reports).len(), 1);
}

#[test]
fn a_refused_set_is_reported_once_per_call_site_and_its_token_resets_to_nothing() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports.install(builder(Loop::CurrentThread)).build();
    runner
        .run(async {
            for i in 0..10 {
                tokio::spawn(async move {
                    let token = RID.set(i);
                    assert_eq!(RID.get(), None);
                    RID.reset(token).unwrap();
                })
                .await
                .unwrap();
            }
            tokio::spawn(async { RID.set(99) }).await.unwrap();
        })
        .unwrap();
    runner.close();
    let refused = refusals(&reports);
    assert_eq!(refused.len(), 2, "one per call site: {refused:?}");
    assert_ne!(refused[0].location(), refused[1].location());
}

#[test]
fn a_set_in_a_plain_blocking_job_is_refused_and_in_runners_own_is_kept() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports.install(builder(Loop::CurrentThread)).build();
    let (plain, ours) = runner
        .run(async {
            // Blocking-pool threads are reused: a value left there would meet the next job.
            let plain = tokio::task::spawn_blocking(|| {
                RID.set(5);
                RID.get()
            });
            let ours = runner::spawn_blocking(|| {
                RID.set(6);
                RID.get()
            });
            (plain.await.unwrap(), ours.await.unwrap())
        })
        .unwrap();
    runner.close();
    assert_eq!((plain, ours), (None, Some(6)));
    assert_eq!(refusals(&reports).len(), 1);
}

#[test]
fn sets_outside_any_tokio_task_keep_their_per_thread_context() {
    common::watchdog(common::TEST_LIMIT);
    // A `#[tokio::main]`-like body (a `block_on` future, not a task) and plain thread code.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seen = rt.block_on(async {
        let token = RID.set(7);
        let seen = RID.get();
        RID.reset(token).unwrap();
        seen
    });
    assert_eq!(seen, Some(7));
    let token = RID.set(8);
    assert_eq!(RID.get(), Some(8));
    RID.reset(token).unwrap();
}

#[test]
fn scope_gives_each_plain_task_its_own_value_across_worker_hops() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(kind)).build();
        let wrong = runner
            .run(async {
                let tasks: Vec<_> = (0..64u64)
                    .map(|i| {
                        tokio::spawn(RID.scope(i, async move {
                            let mut wrong = 0;
                            for round in 0..8 {
                                // Yields move the task between workers on a multi-thread loop.
                                tokio::task::yield_now().await;
                                wrong += usize::from(RID.get() != Some(i));
                                if round == 4 {
                                    // Inside a scope, a set is the future's own.
                                    RID.set(i + 1000);
                                    let child = runner::spawn(async { RID.get() });
                                    wrong += usize::from(child.await.unwrap() != Some(i + 1000));
                                    RID.set(i);
                                }
                            }
                            wrong
                        }))
                    })
                    .collect();
                let mut wrong = 0;
                for task in tasks {
                    wrong += task.await.unwrap();
                }
                assert_eq!(RID.get(), None, "the caller's context was touched");
                wrong
            })
            .unwrap();
        runner.close();
        assert_eq!(wrong, 0, "{kind:?}");
        assert!(refusals(&reports).is_empty(), "{kind:?}");
    }
}

#[test]
fn context_scope_carries_the_spawners_context_into_a_plain_task() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = builder(Loop::MultiThread(2)).build();
    let seen = runner
        .run(async {
            RID.set(42);
            let plain = tokio::spawn(Context::current().scope(async {
                let seen = RID.get();
                RID.set(43); // its own copy
                seen
            }));
            let seen = plain.await.unwrap();
            (seen, RID.get())
        })
        .unwrap();
    runner.close();
    assert_eq!(seen, (Some(42), Some(42)));
}

#[test]
fn a_scoped_future_in_a_task_of_the_runner_stays_that_task() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = builder(Loop::CurrentThread).build();
    let out = runner
        .run(async {
            let (observing, ready) = tokio::sync::oneshot::channel();
            let worker = runner::spawn(RID.scope(3, async move {
                assert!(runner::current_task().is_some());
                // Bound to this task (not to the Runner): the task's own cancel resolves it.
                let stop = runner::cancelled();
                observing.send(()).unwrap();
                stop.await;
                RID.get()
            }));
            ready.await.unwrap();
            worker.cancel();
            worker.await
        })
        .unwrap();
    runner.close();
    assert_eq!(out.unwrap(), Some(3));
}

#[test]
fn a_scoped_futures_destructor_runs_in_its_context() {
    common::watchdog(common::TEST_LIMIT);
    struct ReadOnDrop(Arc<Mutex<Option<u64>>>);
    impl Drop for ReadOnDrop {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = RID.get();
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let guard = ReadOnDrop(seen.clone());
    let fut = RID.scope(11, async move {
        let _guard = guard;
        pending::<()>().await
    });
    drop(fut);
    assert_eq!(*seen.lock().unwrap(), Some(11));
    assert_eq!(RID.get(), None);
}

// ---- axum: request-scoped values in middleware, three requests at once ----

mod axum_server {
    use super::*;
    use axum::extract::{Request, State};
    use axum::middleware::{self, Next};
    use axum::response::Response;
    use axum::routing::get;
    use axum::Router;

    static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");

    /// The middleware as it should be written: the request's future gets its own value.
    async fn scoped_request_id(req: Request, next: Next) -> Response {
        let id = header_id(&req);
        REQUEST_ID.scope(id, next.run(req)).await
    }

    /// The middleware as a server author first writes it.
    async fn naive_request_id(req: Request, next: Next) -> Response {
        let id = header_id(&req);
        REQUEST_ID.set(id);
        next.run(req).await
    }

    fn header_id(req: &Request) -> u64 {
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .expect("an x-request-id header")
    }

    /// Reads the id at the start, after all three requests are in flight, and in a task it
    /// spawns.
    async fn handler(State(in_flight): State<Arc<tokio::sync::Barrier>>) -> String {
        let first = REQUEST_ID.get();
        in_flight.wait().await;
        tokio::task::yield_now().await;
        let after = REQUEST_ID.get();
        let spawned = runner::spawn(async { REQUEST_ID.get() }).await.unwrap();
        format!("handler={first:?} after={after:?} spawned={spawned:?}")
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<Vec<runner::Report>>>,
    }

    impl Server {
        fn start(kind: Loop, scoped: bool) -> Server {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let reports = Reports::default();
                let mut runner = reports.install(builder(kind)).build();
                runner
                    .run(async move {
                        let app = Router::new().route("/id", get(handler));
                        let app = if scoped {
                            app.layer(middleware::from_fn(scoped_request_id))
                        } else {
                            app.layer(middleware::from_fn(naive_request_id))
                        };
                        let app = app.with_state(Arc::new(tokio::sync::Barrier::new(3)));
                        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                        axum::serve(listener, app)
                            .with_graceful_shutdown(async {
                                let _ = stopped.await;
                            })
                            .await
                            .unwrap();
                    })
                    .unwrap();
                runner.close();
                reports.take()
            });
            Server {
                addr,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        fn stop(mut self) -> Vec<runner::Report> {
            let _ = self.stop.take().unwrap().send(());
            self.thread.take().unwrap().join().unwrap()
        }
    }

    /// Three HTTP/1.1 requests in flight at once, each on its own connection.
    fn three_http1(addr: SocketAddr) -> Vec<(u64, String)> {
        let requests: Vec<_> = (1..=3u64)
            .map(|id| {
                std::thread::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    write!(
                        stream,
                        "GET /id HTTP/1.1\r\nHost: {addr}\r\nx-request-id: {id}\r\n\
                         Connection: close\r\n\r\n"
                    )
                    .unwrap();
                    let mut response = String::new();
                    stream.read_to_string(&mut response).unwrap();
                    assert!(response.starts_with("HTTP/1.1 200 "), "{response:?}");
                    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
                    (id, body.to_owned())
                })
            })
            .collect();
        requests.into_iter().map(|r| r.join().unwrap()).collect()
    }

    /// Three HTTP/2 requests in flight at once, as streams of one connection, sent with
    /// hyper's own HTTP/2 client.
    fn three_http2(addr: SocketAddr) -> Vec<(u64, String)> {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let client = tokio::runtime::Runtime::new().unwrap();
        client.block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let requests: Vec<_> = (1..=3u64)
                .map(|id| {
                    let mut sender = sender.clone();
                    tokio::spawn(async move {
                        let request = hyper::Request::get(format!("http://{addr}/id"))
                            .header("x-request-id", id)
                            .body(Empty::<axum::body::Bytes>::new())
                            .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        assert_eq!(response.version(), hyper::Version::HTTP_2);
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        (id, String::from_utf8(body.to_vec()).unwrap())
                    })
                })
                .collect();
            let mut out = Vec::new();
            for request in requests {
                out.push(request.await.unwrap());
            }
            out
        })
    }

    fn assert_each_sees_its_own(kind: Loop, proto: &str, responses: &[(u64, String)]) {
        for (id, body) in responses {
            assert_eq!(
                body,
                &format!("handler=Some({id}) after=Some({id}) spawned=Some({id})"),
                "{kind:?} {proto}: request {id}"
            );
        }
    }

    #[test]
    fn scoped_middleware_gives_each_of_three_concurrent_requests_its_own_id() {
        common::watchdog(common::TEST_LIMIT);
        for kind in [Loop::CurrentThread, Loop::MultiThread(2)] {
            let server = Server::start(kind, true);
            assert_each_sees_its_own(kind, "HTTP/1.1", &three_http1(server.addr));
            assert_each_sees_its_own(kind, "HTTP/2", &three_http2(server.addr));
            let reports = server.stop();
            assert!(reports.is_empty(), "{kind:?}: {reports:?}");
        }
    }

    #[test]
    fn naive_set_middleware_never_shows_one_request_another_requests_id() {
        common::watchdog(common::TEST_LIMIT);
        for kind in [Loop::CurrentThread, Loop::MultiThread(2)] {
            let server = Server::start(kind, false);
            let mut responses = three_http1(server.addr);
            responses.extend(three_http2(server.addr));
            let reports = server.stop();
            for (id, body) in &responses {
                // Refused, so nobody sees a value at all (before: `handler=Some(1)
                // after=Some(3)`, request 1 reading request 3's id).
                assert_eq!(
                    body, "handler=None after=None spawned=None",
                    "{kind:?}: request {id}"
                );
            }
            let refused: Vec<_> = reports
                .iter()
                .filter(|r| r.kind() == ReportKind::ContextSetRefused)
                .collect();
            assert_eq!(refused.len(), 1, "{kind:?}: {reports:?}");
            assert!(
                refused[0].message().contains("\"request_id\""),
                "{}",
                refused[0]
            );
        }
    }
}
