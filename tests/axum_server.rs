//! `examples/axum_server.rs` over real HTTP on loopback: a child process, raw HTTP/1.1 over
//! `TcpStream`, real `kill(2)` (DESIGN.md "Cancellation", last bullet; "Ctrl-C"; "SIGTERM").
#![cfg(unix)]

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::child::{Proc, Start};

/// Starts the server (drain bound `drain_ms`); returns it and its address.
fn start(drain_ms: &str) -> (Proc, SocketAddr) {
    let mut server = Proc::example(
        "axum_server",
        &[],
        Start::Default,
        &[("DRAIN_TIMEOUT_MS", drain_ms)],
    );
    let addr = server.expect_line_starting("listening on ");
    let addr: SocketAddr = addr.parse().expect("a socket address");
    assert!(addr.ip().is_loopback(), "{addr}");
    (server, addr)
}

/// One `GET path` on a new connection; the whole response, or the error that cut it.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    common::http_get(addr, path, Duration::from_secs(60))
}

/// Starts a `GET /slow?ms=N` on a thread and waits until the server is handling it.
fn slow_request_in_flight(
    server: &mut Proc,
    addr: SocketAddr,
    ms: u64,
) -> JoinHandle<std::io::Result<String>> {
    let request = std::thread::spawn(move || get(addr, &format!("/slow?ms={ms}")));
    server.expect_line(&format!("slow request: sleeping {ms} ms"));
    request
}

fn assert_ok_200(response: &std::io::Result<String>, body: &str) {
    match response {
        Ok(text) => assert!(
            text.starts_with("HTTP/1.1 200 ") && text.ends_with(body),
            "expected 200 with body {body:?}, got {text:?}"
        ),
        Err(e) => panic!("expected 200 with body {body:?}, got error {e}"),
    }
}

/// Connects until the listener refuses (axum closes it when it stops accepting, which its
/// shutdown task does concurrently with our `draining` line). Returns how long that took.
fn wait_until_refused(addr: SocketAddr, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return started.elapsed(),
            // A connection still in the listener's backlog when axum closes the listener is
            // reset by the kernel: the listener is going away, so look again.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect during the drain: unexpected error {e}"),
            Ok(stream) => drop(stream),
        }
        assert!(
            started.elapsed() < within,
            "new connections still accepted {within:?} into the drain"
        );
        // Polling the listener until it refuses (no event to wait on): not an ordering sleep.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The graceful path for `signal`: the request in flight finishes with 200, new connections
/// are refused meanwhile, then the process dies by `signal`.
fn drains_in_flight_requests_then_dies_by(signal: libc::c_int) {
    let (mut server, addr) = start("20000");
    assert_ok_200(&get(addr, "/"), "hello\n");
    let slow = slow_request_in_flight(&mut server, addr, 3000);

    server.signal(signal);
    server.expect_line_starting("draining");
    let took = wait_until_refused(addr, Duration::from_secs(2));
    assert!(
        !slow.is_finished(),
        "the slow request ended before the refusal was seen ({took:?} into the drain)"
    );
    // Refused for good, not a blip.
    for _ in 0..3 {
        let again = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        assert_eq!(
            again.as_ref().map_err(|e| e.kind()).err(),
            Some(ErrorKind::ConnectionRefused),
            "{again:?}"
        );
    }

    assert_ok_200(&slow.join().unwrap(), "done after 3000 ms\n");
    server.assert_died_by(signal, Duration::from_secs(10));
    server.assert_printed("slow request: done");
    server.assert_printed("drained");
}

#[test]
fn ctrl_c_drains_the_request_in_flight_refuses_new_ones_and_dies_by_sigint() {
    drains_in_flight_requests_then_dies_by(libc::SIGINT);
}

#[test]
fn sigterm_drains_the_request_in_flight_refuses_new_ones_and_dies_by_sigterm() {
    drains_in_flight_requests_then_dies_by(libc::SIGTERM);
}

/// `first` starts the drain of a 30 s request; `second` kills at once and cuts it.
fn second_signal_during_the_drain_kills(first: libc::c_int, second: libc::c_int) {
    let (mut server, addr) = start("20000");
    let slow = slow_request_in_flight(&mut server, addr, 30_000);
    server.signal(first);
    server.expect_line_starting("draining");
    server.signal(second);
    server.assert_died_by(second, Duration::from_secs(2));
    let cut = slow.join().unwrap();
    assert!(
        !matches!(&cut, Ok(text) if text.starts_with("HTTP/1.1")),
        "the in-flight request got a response: {cut:?}"
    );
    server.assert_not_printed("slow request: done");
    server.assert_not_printed("drained");
}

#[test]
fn second_ctrl_c_during_the_drain_kills_at_once_and_cuts_the_request() {
    second_signal_during_the_drain_kills(libc::SIGINT, libc::SIGINT);
}

#[test]
fn second_sigterm_during_the_drain_kills_at_once_and_cuts_the_request() {
    second_signal_during_the_drain_kills(libc::SIGTERM, libc::SIGTERM);
}

#[test]
fn ctrl_c_during_a_sigterm_drain_kills_at_once_and_cuts_the_request() {
    second_signal_during_the_drain_kills(libc::SIGTERM, libc::SIGINT);
}

#[test]
fn the_drain_is_bounded_by_drain_timeout_ms() {
    let (mut server, addr) = start("500");
    let slow = slow_request_in_flight(&mut server, addr, 30_000);
    server.sigint();
    server.expect_line_starting("draining");
    server.assert_died_by_sigint(Duration::from_secs(10));
    server.assert_printed("drain timed out; dropping the connections still open");
    let cut = slow.join().unwrap();
    assert!(
        !matches!(&cut, Ok(text) if text.starts_with("HTTP/1.1")),
        "the request past the drain bound got a response: {cut:?}"
    );
}

/// The README's migration advice, checked: the tokio pattern
/// `with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })` keeps working
/// under a Runner built with `handle_sigint(false)`.
#[test]
fn tokio_ctrl_c_pattern_drains_under_handle_sigint_false() {
    let mut server = Proc::example("axum_tokio_ctrl_c", &["own"], Start::Default, &[]);
    let addr: SocketAddr = server
        .expect_line_starting("listening on ")
        .parse()
        .unwrap();
    let slow = slow_request_in_flight(&mut server, addr, 2000);
    server.sigint();
    server.expect_line("draining");
    assert_ok_200(&slow.join().unwrap(), "done after 2000 ms\n");
    server.assert_exit_0(Duration::from_secs(10));
    server.assert_printed("result: Ok(Ok(()))");
}

/// ... and without it, runner's Ctrl-C drops the (non-observing) main task: the request in
/// flight is cut, and debug mode says why.
#[test]
fn tokio_ctrl_c_pattern_under_runner_ctrl_c_is_cut_and_debug_mode_says_why() {
    let mut server = Proc::example(
        "axum_tokio_ctrl_c",
        &["runner"],
        Start::Default,
        &[("RUNNER_DEBUG", "1")],
    );
    let addr: SocketAddr = server
        .expect_line_starting("listening on ")
        .parse()
        .unwrap();
    let slow = slow_request_in_flight(&mut server, addr, 2000);
    server.sigint();
    server.assert_died_by_sigint(Duration::from_secs(10));
    server.assert_printed("result: Err(Interrupted)");
    let cut = slow.join().unwrap();
    assert!(
        !matches!(&cut, Ok(text) if text.starts_with("HTTP/1.1")),
        "the in-flight request got a response: {cut:?}"
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains("the main task was not observing runner::cancelled() and was dropped")
            && stderr.contains("handle_sigint = false"),
        "{stderr}"
    );
}
