use std::rc::Rc;

#[runner::main]
async fn main() {
    let task = runner::spawn(async {
        let shared = Rc::new(5);
        tokio::task::yield_now().await;
        *shared
    });
    let _ = task.await;
}
