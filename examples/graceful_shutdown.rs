//! A worker loop that shuts down cleanly on Ctrl-C: `cargo run --example graceful_shutdown`.
//!
//! - The first Ctrl-C cancels the main task. It is observing `runner::cancelled()`, so it
//!   does its async cleanup (tell the worker to stop, wait for it), then ends.
//! - `runner::at_close` registers an async finalizer that the Runner's close runs last.
//! - A second Ctrl-C at any point during the cleanup kills the process at once.
//! - The process then dies by SIGINT (shell status 130), as a Python program does.
//!
//! Set `CLEANUP_MS` to make the cleanup slower (to try the second Ctrl-C).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[runner::main]
async fn main() -> std::io::Result<()> {
    let cleanup = Duration::from_millis(
        std::env::var("CLEANUP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    // A tiny echo service on loopback, and a client that keeps it busy.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = runner::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                break;
            };
            runner::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    if socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    runner::at_close(|| async {
        println!("finalizer: flushed logs");
    });

    let mut client = TcpStream::connect(addr).await?;
    // One `cancelled()` for the whole loop (it is `Unpin`: select on `&mut` it): a Ctrl-C
    // that comes while a request is in flight is seen at the next iteration, and the
    // request is not cut.
    let mut cancelled = runner::cancelled();
    println!("serving on {addr}; press Ctrl-C to stop");
    let mut served = 0u64;
    loop {
        tokio::select! {
            _ = &mut cancelled => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                client.write_all(b"ping").await?;
                let mut reply = [0u8; 4];
                client.read_exact(&mut reply).await?;
                served += 1;
                if served == 1 {
                    println!("ready");
                }
            }
        }
    }
    println!("Ctrl-C: shutting down after {served} requests");
    server.cancel();
    let _ = server.await;
    tokio::time::sleep(cleanup).await; // stands for closing connections, flushing state
    println!("cleanup done");
    Ok(())
}
