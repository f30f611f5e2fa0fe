//! Robustness: thousands of generated and mutated attribute arguments and items go through
//! `expand`. It must never panic, must always produce tokens that parse as Rust items, must
//! reject every input known to be wrong, and must report each independent mistake.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use proc_macro2::{TokenStream, TokenTree};

use crate::expand::expand;
use crate::keys::Macro;

/// xorshift64*: tiny, deterministic, good enough to pick from lists.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        // `n` is small; the modulo bias does not matter here.
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const KEYS: &[&str] = &[
    "debug",
    "loop_factory",
    "flavor",
    "worker_threads",
    "start_paused",
    "name",
    "shutdown_timeout",
    "shutdown_report_after",
    "handle_sigint",
    "handle_sigterm",
    "grace_period",
    "drain_delay",
    "slow_callback_duration",
    "exception_handler",
    "timeout",
    "crate",
    "bogus",
    "Debug",
    "r#debug",
    "self",
    "fn",
    "_",
    "worker_thread",
    "unhandled_panic",
];

const VALUES: &[&str] = &[
    "true",
    "false",
    "\"yes\"",
    "\"true\"",
    "0",
    "1",
    "4",
    "4usize",
    "4u8",
    "-1",
    "1.5",
    "'c'",
    "b\"x\"",
    "18446744073709551616",
    "\"30s\"",
    "\"0ms\"",
    "\"2m\"",
    "\"1.5s\"",
    "\"0.25ms\"",
    "\".5s\"",
    "\"1.s\"",
    "\"0.0000000001s\"",
    "\"10 parsecs\"",
    "\"\"",
    "\"s\"",
    "\"99999999999999999999s\"",
    "\"307445734561825861m\"",
    "\"multi_thread\"",
    "\"current_thread\"",
    "\"local\"",
    "\" \"",
    "\"my-runtime\"",
    "\"bogus\"",
    "\"4\"",
    "multi_thread",
    "my_fn",
    "a::b::c",
    "|| make()",
    "|a, b| a",
    "move || { 1 }",
    "make(4)",
    "\"my::runner\"",
    "\"::runner\"",
    "\"a b\"",
    "\"crate::x\"",
    "\"1 + \"",
    "[1, 2]",
    "(true)",
    "{ }",
    "async {}",
    "#[x] true",
    "x = y",
];

const PUNCT: &[&str] = &[
    ",", "=", "==", ";", "::", "#", "|", "||", "->", "=>", "&", ".", "?", "!", "<", ">", "@", "'a",
    "()", "[]", "{}", "(,)", "[=]",
];

const ITEMS: &[&str] = &[
    "async fn main() {}",
    "fn main() {}",
    "pub async fn main() -> Result<(), Box<dyn std::error::Error>> { let x = f()?; Ok(x) }",
    "async fn main() -> ! { loop {} }",
    "async fn main() -> (!) { std::process::exit(0) }",
    "async fn main() -> impl std::process::Termination { std::process::ExitCode::SUCCESS }",
    "async fn main(x: u8, y: u16) {}",
    "async fn main<T: Default>() where T: Clone {}",
    "async fn main(...) {}",
    "async fn main(&self) {}",
    "/// doc\n#[allow(unused)] #[should_panic] async fn t() { #![allow(dead_code)] let x = 1; }",
    "#[test] async fn t() {}",
    "#[tokio::test] #[ignore] async fn t() {}",
    "#[::core::prelude::v1::test] async fn t() {}",
    "#[cfg(test)] #[test_case] async fn t() {}",
    "async unsafe fn f() {}",
    "const fn f() {}",
    "extern \"C\" fn f() {}",
    "pub(crate) async fn f() -> u32 { return 4; }",
    "pub struct S;",
    "struct S { a: u8 }",
    "impl S {}",
    "mod m {}",
    "use x::y;",
    "fn f();",
    "static X: u8 = 1;",
    "macro_rules! m { () => {} }",
];

/// A random mix of keys, values and punctuation; mostly nonsense.
fn random_args(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..rng.below(7) {
        match rng.below(6) {
            0..=2 => {
                out.push_str(rng.pick(KEYS));
                out.push_str(" = ");
                out.push_str(rng.pick(VALUES));
            }
            3 => out.push_str(rng.pick(KEYS)),
            4 => out.push_str(rng.pick(VALUES)),
            _ => out.push_str(rng.pick(PUNCT)),
        }
        out.push_str(if rng.chance(5) { rng.pick(PUNCT) } else { ", " });
        out.push(' ');
    }
    out
}

/// A valid configuration for `kind`: each key at most once, the cross-key rules kept.
fn valid_args(rng: &mut Rng, kind: Macro) -> String {
    let mut entries: Vec<String> = Vec::new();
    if rng.chance(2) {
        entries.push(format!("debug = {}", rng.pick(&["true", "false"])));
    }
    match rng.below(4) {
        0 => entries.push(format!(
            "loop_factory = {}",
            rng.pick(&[
                "my_fn",
                "a::b",
                "|| make()",
                "move || { make() }",
                "make(4)"
            ])
        )),
        1 => {
            entries.push(format!(
                "flavor = {}",
                rng.pick(&["\"current_thread\"", "\"local\""])
            ));
            if rng.chance(2) {
                entries.push(format!("start_paused = {}", rng.pick(&["true", "false"])));
            }
        }
        2 => {
            entries.push("flavor = \"multi_thread\"".into());
            if rng.chance(2) {
                entries.push(format!("worker_threads = {}", 1 + rng.below(64)));
            }
        }
        _ if rng.chance(2) => {
            entries.push(format!("start_paused = {}", rng.pick(&["true", "false"])));
        }
        _ => {}
    }
    if rng.chance(2) && !entries.iter().any(|e| e.starts_with("loop_factory")) {
        entries.push(format!(
            "name = {}",
            rng.pick(&[
                "\"my-runtime\"",
                "\" x \"",
                "\"runtime \\\"one\\\"\"",
                "\"é\""
            ])
        ));
    }
    if rng.chance(2) {
        entries.push(format!(
            "shutdown_timeout = \"{}{}\"",
            rng.below(1000),
            rng.pick(&["ms", "s", "m"])
        ));
    }
    if rng.chance(2) {
        entries.push(format!(
            "shutdown_report_after = \"{}{}\"",
            1 + rng.below(1000),
            rng.pick(&["ms", "s", "m"])
        ));
    }
    if rng.chance(2) {
        entries.push(format!(
            "slow_callback_duration = \"{}.{}{}\"",
            rng.below(100),
            rng.below(1000),
            rng.pick(&["ms", "s", "m"])
        ));
    }
    if rng.chance(2) {
        entries.push(format!(
            "exception_handler = {}",
            rng.pick(&["my_handler", "a::b", "|r| log(r)", "move |_| {}"])
        ));
    }
    if kind == Macro::Main && rng.chance(2) {
        // Valid together: a grace period, and a drain delay shorter than it.
        let grace = 1 + rng.below(1000);
        entries.push(format!("grace_period = \"{grace}s\""));
        if rng.chance(2) {
            entries.push(format!(
                "drain_delay = \"{}ms\"",
                1 + rng.below(grace * 1000 - 1)
            ));
        }
    }
    match kind {
        Macro::Main if rng.chance(2) => {
            entries.push(format!("handle_sigint = {}", rng.pick(&["true", "false"])));
        }
        Macro::Test if rng.chance(2) => entries.push(format!(
            "timeout = \"{}{}\"",
            1 + rng.below(1000),
            rng.pick(&["ms", "s", "m"])
        )),
        _ => {}
    }
    if rng.chance(3) {
        entries.push(format!(
            "crate = \"{}\"",
            rng.pick(&["::runner", "my::runner", "crate::r"])
        ));
    }
    // Order does not matter.
    for i in (1..entries.len()).rev() {
        entries.swap(i, rng.below(i + 1));
    }
    let mut args = entries.join(", ");
    if !args.is_empty() && rng.chance(3) {
        args.push(',');
    }
    args
}

/// A mistake that is wrong whatever surrounds it, for either macro.
fn invalid_entry(rng: &mut Rng, n: usize) -> String {
    match rng.below(8) {
        0 => format!("bogus{n} = 1"),
        1 => format!("unknown_{n}"),
        2 => format!("r#nope{n} = \"x\""),
        3 => format!("zz{n} = || make()"),
        4 => format!("{n}"),
        5 => format!("\"key{n}\" = true"),
        6 => format!("missing_{n} ="),
        _ => format!("x{n}::y = 1"),
    }
}

fn async_fn(rng: &mut Rng, kind: Macro) -> &'static str {
    match kind {
        Macro::Main => rng.pick(&[
            "async fn main() {}",
            "pub async fn main() -> Result<(), Box<dyn std::error::Error>> { Ok(()) }",
            "async fn main() -> ! { loop {} }",
            "async fn main() -> impl std::process::Termination {}",
            "/// doc\n#[allow(unused)] async fn main() { #![allow(dead_code)] return; }",
        ]),
        Macro::Test => rng.pick(&[
            "async fn t() {}",
            "#[should_panic(expected = \"x\")] async fn t() { panic!(\"x\") }",
            "#[ignore] async fn t() -> Result<(), String> { Err(\"no\".into()) }",
            "/// doc\nasync fn t() { #![allow(unused)] let x = 1; }",
        ]),
    }
}

/// Drops, duplicates, swaps or replaces top-level tokens, or truncates the stream.
fn mutate(rng: &mut Rng, tokens: TokenStream) -> TokenStream {
    let mut trees: Vec<TokenTree> = tokens.into_iter().collect();
    for _ in 0..=rng.below(3) {
        if trees.is_empty() {
            break;
        }
        let i = rng.below(trees.len());
        match rng.below(5) {
            0 => {
                trees.remove(i);
            }
            1 => {
                let copy = trees[i].clone();
                trees.insert(i, copy);
            }
            2 => {
                let j = rng.below(trees.len());
                trees.swap(i, j);
            }
            3 => trees.truncate(i),
            _ => {
                let replacement = parse(rng.pick(PUNCT))
                    .into_iter()
                    .chain(parse(rng.pick(VALUES)));
                trees.splice(i..=i, replacement.take(1 + rng.below(2)));
            }
        }
    }
    trees.into_iter().collect()
}

fn parse(text: &str) -> TokenStream {
    TokenStream::from_str(text).unwrap_or_default()
}

fn kind(rng: &mut Rng) -> Macro {
    if rng.chance(2) {
        Macro::Main
    } else {
        Macro::Test
    }
}

/// Expands, failing the test (with the input) if the macro panics or emits tokens that
/// are not Rust items.
fn run(kind: Macro, args: &TokenStream, item: &TokenStream) -> String {
    let output = catch_unwind(AssertUnwindSafe(|| {
        expand(kind, args.clone(), item.clone())
    }))
    .unwrap_or_else(|_| panic!("{kind} panicked on args `{args}` item `{item}`"));
    if syn::parse2::<syn::Item>(item.clone()).is_ok() {
        if let Err(error) = syn::parse2::<syn::File>(output.clone()) {
            panic!("{kind}(`{args}`) on `{item}` gave invalid Rust ({error}): {output}");
        }
    }
    output.to_string()
}

fn compile_errors(output: &str) -> usize {
    output.matches("compile_error").count()
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut rejected = 0;
    for round in 0..3000 {
        let kind = kind(&mut rng);
        let mut args = parse(&random_args(&mut rng));
        let mut item = parse(rng.pick(ITEMS));
        if round % 2 == 1 {
            args = mutate(&mut rng, args);
        }
        if round % 3 == 2 {
            item = mutate(&mut rng, item);
        }
        if compile_errors(&run(kind, &args, &item)) > 0 {
            rejected += 1;
        }
    }
    // The generators are built to produce mostly nonsense.
    assert!(rejected > 2000, "only {rejected} of 3000 rejected");
}

#[test]
fn valid_configurations_expand_without_errors() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    for _ in 0..1500 {
        let kind = kind(&mut rng);
        let args = valid_args(&mut rng, kind);
        let output = run(kind, &parse(&args), &parse(async_fn(&mut rng, kind)));
        assert_eq!(
            compile_errors(&output),
            0,
            "{kind}({args}) was rejected: {output}"
        );
    }
}

#[test]
fn every_independent_mistake_is_reported() {
    let mut rng = Rng(0xbad_c0de_0bad_beef);
    for _ in 0..1500 {
        let kind = kind(&mut rng);
        let valid = valid_args(&mut rng, kind);
        let mistakes = 1 + rng.below(4);
        let mut entries: Vec<String> = valid
            .split(", ")
            .filter(|e| !e.is_empty())
            .map(|e| e.trim_end_matches(',').to_owned())
            .collect();
        for n in 0..mistakes {
            let at = rng.below(entries.len() + 1);
            entries.insert(at, invalid_entry(&mut rng, n));
        }
        let args = entries.join(", ");
        let output = run(kind, &parse(&args), &parse(async_fn(&mut rng, kind)));
        assert_eq!(
            compile_errors(&output),
            mistakes,
            "{kind}({args}) should give {mistakes} errors: {output}"
        );
    }
}

#[test]
fn inputs_known_to_be_wrong_are_rejected() {
    let mut rng = Rng(0xfeed_face_dead_0042);
    let wrong_items = [
        "fn main() {}",
        "async fn main(x: u8) {}",
        "async fn main<T>() {}",
        "pub struct S;",
        "impl S {}",
        "fn f();",
    ];
    for _ in 0..1000 {
        let kind = kind(&mut rng);
        let args = valid_args(&mut rng, kind);
        let item = wrong_items[rng.below(wrong_items.len())];
        let output = run(kind, &parse(&args), &parse(item));
        assert!(
            compile_errors(&output) > 0,
            "{kind}({args}) accepted `{item}`"
        );
    }
    for (kind, args) in [
        (Macro::Main, "timeout = \"1s\""),
        (Macro::Test, "handle_sigint = true"),
        (Macro::Test, "handle_sigterm = true"),
        (Macro::Test, "grace_period = \"25s\""),
        (Macro::Test, "drain_delay = \"5s\""),
        (Macro::Main, "grace_period = \"0s\""),
        (Macro::Main, "drain_delay = \"0ms\""),
        (Macro::Main, "drain_delay = \"5s\", handle_sigterm = false"),
        (Macro::Main, "grace_period = \"5s\", drain_delay = \"5s\""),
        (
            Macro::Main,
            "grace_period = \"5s\", handle_sigint = false, handle_sigterm = false",
        ),
        (Macro::Main, "debug = true, debug = true"),
        (Macro::Test, "worker_threads = 2"),
        (
            Macro::Main,
            "flavor = \"current_thread\", worker_threads = 2",
        ),
        (Macro::Test, "loop_factory = f, flavor = \"multi_thread\""),
        (
            Macro::Test,
            "start_paused = true, flavor = \"multi_thread\"",
        ),
        (
            Macro::Main,
            "flavor = \"multi_thread\", start_paused = false",
        ),
        (Macro::Test, "loop_factory = f, start_paused = true"),
        (Macro::Test, "start_paused = \"true\""),
        (Macro::Test, "start_paused"),
        (Macro::Main, "shutdown_timeout = \"99999999999999999999s\""),
        (Macro::Test, "timeout = \"0s\""),
        (Macro::Main, "crate = \"\""),
        (Macro::Main, "slow_callback_duration = 50"),
        (Macro::Test, "slow_callback_duration = \"1.5\""),
        (Macro::Main, "exception_handler = \"my_handler\""),
        (Macro::Test, "exception_handler = 4"),
        (Macro::Main, "name = \"\""),
        (Macro::Test, "name = \" \\t\\n\""),
        (Macro::Main, "name = my_name"),
        (Macro::Test, "name = \"rt\", loop_factory = f"),
        (Macro::Main, "flavor = \"local\", worker_threads = 2"),
        (Macro::Test, "flavor = \"local\", loop_factory = f"),
        (Macro::Main, "flavor = local"),
        (Macro::Test, "unhandled_panic = \"ignore\""),
        (
            Macro::Main,
            "unhandled_panic = \"shutdown_runtime\", flavor = \"local\"",
        ),
    ] {
        let output = run(kind, &parse(args), &parse(async_fn(&mut rng, kind)));
        assert!(compile_errors(&output) > 0, "{kind}({args}) was accepted");
    }
}
