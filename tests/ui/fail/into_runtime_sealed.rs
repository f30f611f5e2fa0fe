// `IntoRuntime` is sealed: a type of the user's own cannot become a loop; the factory
// builds one of the accepted types from it instead.
struct MyLoop;

impl runner::IntoRuntime for MyLoop {}

fn main() {}
