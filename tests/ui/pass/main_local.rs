// `flavor = "local"` with a name: tokio's `LocalRuntime`, where `tokio::task::spawn_local`
// works in the body and in every task, with no `LocalSet`.
#![deny(warnings, unused_qualifications, clippy::all)]

use std::rc::Rc;

use tokio::runtime::Handle;

#[runner::main(flavor = "local", name = "local-main", shutdown_timeout = "5s")]
async fn main() {
    assert_eq!(Handle::current().name(), Some("local-main"));
    let rc = Rc::new(20);
    let own = tokio::task::spawn_local({
        let rc = rc.clone();
        async move { *rc + 1 }
    });
    let from_plain = tokio::spawn(async {
        tokio::task::spawn_local(async { *Rc::new(1) })
            .await
            .unwrap()
    });
    let from_runner = runner::spawn_local(async move { *rc });
    let sum = own.await.unwrap() + from_plain.await.unwrap() + from_runner.await.unwrap();
    assert_eq!(sum, 42);
    // Left pending: cancelled by the close after the body.
    drop(runner::spawn_local(std::future::pending::<()>()));
}
