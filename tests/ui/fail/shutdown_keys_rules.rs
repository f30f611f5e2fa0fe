// A grace period of zero forces the exit at the first signal.
#[runner::main(grace_period = "0s")]
async fn zero_grace() {}

// A drain delay of zero is no delay.
#[runner::main(drain_delay = "0ms")]
async fn zero_delay() {}

// The drain delay delays a SIGTERM's cancel: with SIGTERM unhandled it does nothing.
#[runner::main(handle_sigterm = false, drain_delay = "5s")]
async fn delay_without_sigterm() {}

// The grace period counts the delay: nothing would be left for the drain.
#[runner::main(grace_period = "5s", drain_delay = "5s")]
async fn delay_as_long_as_grace() {}

// The grace period counts from the first handled signal: none is handled.
#[runner::main(grace_period = "25s", handle_sigint = false, handle_sigterm = false)]
async fn grace_without_signals() {}

fn main() {
    zero_grace();
    zero_delay();
    delay_without_sigterm();
    delay_as_long_as_grace();
    grace_without_signals();
}
