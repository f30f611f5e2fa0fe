fn my_runtime() -> u32 {
    4
}

#[runner::main(loop_factory = my_runtime)]
async fn main() {}
