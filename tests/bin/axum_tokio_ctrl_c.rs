//! Child program for `tests/axum_server.rs`: the tokio user's usual graceful pattern,
//! `with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })`, run by a Runner.
//! `argv[1]` = `own` builds it with `handle_sigint(false)` (the README's advice for programs
//! that keep handling Ctrl-C themselves); anything else keeps runner's Ctrl-C handling on.
//! Prints `listening on <addr>`; `GET /slow` sleeps 2 s.

use std::future::IntoFuture;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

fn main() -> std::io::Result<()> {
    let own = std::env::args().nth(1).as_deref() == Some("own");
    let mut runner = runner::Runner::builder().handle_sigint(!own).build();
    let result = runner.run(async {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                println!("slow request: sleeping 2000 ms");
                // sleep: a slow request, in flight when the test sends SIGINT.
                tokio::time::sleep(Duration::from_millis(2000)).await;
                "done after 2000 ms\n"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                tokio::signal::ctrl_c().await.ok();
                println!("draining");
            })
            .into_future()
            .await
    });
    println!("result: {result:?}");
    runner.close();
    match result {
        Ok(served) => served,
        Err(runner::RunError::Interrupted) => runner::die_by_sigint(),
        Err(other) => Err(std::io::Error::other(other)),
    }
}
