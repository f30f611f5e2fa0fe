// A path loop factory; `-> Result` with `?` and an early `return` in the body.
#![deny(warnings, unused_qualifications, clippy::all)]

use std::error::Error;
use std::io;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

fn two_workers() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

#[runner::main(loop_factory = two_workers)]
async fn main() -> Result<(), Box<dyn Error>> {
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::MultiThread
    );
    let n: u32 = "7".parse()?;
    if n == 7 {
        return Ok(());
    }
    Err("unreachable".into())
}
