//! Step two: the rules between keys, and the rules on the function itself. The result is
//! always a usable [`Config`]: a rejected setting is reported and left out, so the expansion
//! still produces the function and the only errors are the ones reported here.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Attribute, Expr, LitBool, LitStr};

use crate::attr::{Configuration, Setting};
use crate::error::Errors;
use crate::item::AsyncFn;
use crate::keys::{Key, Macro};
use crate::value::{Count, DurationLit, Flavor, Value};

/// What the expansion builds.
pub(crate) struct Config {
    /// The path to the runner crate; `None` means `::runner`.
    pub(crate) krate: Option<TokenStream>,
    pub(crate) debug: Option<LitBool>,
    pub(crate) runtime: Runtime,
    pub(crate) shutdown_timeout: Option<DurationLit>,
    pub(crate) shutdown_report_after: Option<DurationLit>,
    pub(crate) handle_sigint: Option<LitBool>,
    pub(crate) handle_sigterm: Option<LitBool>,
    pub(crate) grace_period: Option<DurationLit>,
    pub(crate) drain_delay: Option<DurationLit>,
    pub(crate) slow_callback_duration: Option<DurationLit>,
    /// The user's handler expression, spans and all.
    pub(crate) exception_handler: Option<Expr>,
    pub(crate) timeout: Option<DurationLit>,
}

/// How the runtime is made.
pub(crate) enum Runtime {
    /// runner-core's default: a current-thread runtime.
    Default,
    /// Built in the user's crate from the runtime keys (`flavor`, `worker_threads`,
    /// `start_paused`, `name`).
    Built(Built),
    /// `loop_factory = expr`.
    Factory(Expr),
}

/// A runtime the expansion builds from the keys.
pub(crate) struct Built {
    pub(crate) flavor: BuiltFlavor,
    /// `start_paused = true`, and where the key was written (a build whose tokio lacks
    /// `test-util` reports it there).
    pub(crate) start_paused: Option<Span>,
    /// `name = "..."`: the runtime's name (tokio's `Builder::name`).
    pub(crate) name: Option<LitStr>,
}

pub(crate) enum BuiltFlavor {
    /// A current-thread runtime (`flavor = "current_thread"`, or no flavor).
    CurrentThread,
    /// `flavor = "multi_thread"`, with `worker_threads` if given, and where the flavor was
    /// written (a build whose tokio lacks `rt-multi-thread` reports it there).
    MultiThread(Option<Count>, Span),
    /// `flavor = "local"`: tokio's `LocalRuntime`.
    Local,
}

/// Applies the cross-key rules to what the user wrote.
pub(crate) fn build(raw: &Configuration, errors: &mut Errors) -> Config {
    let grace_period = duration_setting(raw, Key::GracePeriod);
    Config {
        krate: raw.get(Key::Crate).and_then(|s| match &s.value {
            Value::Path(path) => Some(path.clone()),
            _ => None,
        }),
        debug: bool_setting(raw, Key::Debug),
        runtime: runtime(raw, errors),
        shutdown_timeout: duration_setting(raw, Key::ShutdownTimeout),
        shutdown_report_after: duration_setting(raw, Key::ShutdownReportAfter),
        handle_sigint: bool_setting(raw, Key::HandleSigint),
        handle_sigterm: bool_setting(raw, Key::HandleSigterm),
        drain_delay: shutdown_keys(raw, grace_period.as_ref(), errors),
        grace_period,
        slow_callback_duration: duration_setting(raw, Key::SlowCallbackDuration),
        exception_handler: raw.get(Key::ExceptionHandler).and_then(|s| match &s.value {
            Value::Callable(expr) => Some(expr.clone()),
            _ => None,
        }),
        timeout: duration_setting(raw, Key::Timeout),
    }
}

fn runtime(raw: &Configuration, errors: &mut Errors) -> Runtime {
    let flavor = raw.get(Key::Flavor).and_then(|s| match s.value {
        Value::Flavor(flavor) => Some(flavor),
        _ => None,
    });
    let workers = raw.get(Key::WorkerThreads).and_then(|s| match s.value {
        Value::Count(count) => Some((count, s)),
        _ => None,
    });
    let start_paused = raw.get(Key::StartPaused).and_then(|s| match &s.value {
        Value::Bool(on) => Some((on.value, s)),
        _ => None,
    });
    let name = raw.get(Key::Name).and_then(|s| match &s.value {
        Value::Name(name) => Some((name.clone(), s)),
        _ => None,
    });

    if let Some(factory) = raw.get(Key::LoopFactory) {
        // The factory decides everything about the runtime; a flavor next to it would be
        // silently ignored, so it is an error instead.
        for setting in [raw.get(Key::Flavor), raw.get(Key::WorkerThreads)]
            .into_iter()
            .flatten()
        {
            let name = setting.spec.name;
            let message = if flavor == Some(Flavor::Local) && setting.spec.key == Key::Flavor {
                "`flavor = \"local\"` cannot be combined with `loop_factory` (the factory \
                 builds the runtime): have the factory build a `LocalRuntime` \
                 (`tokio::runtime::Builder::new_current_thread().enable_all()\
                 .build_local(Default::default())`), or remove `loop_factory`"
                    .to_owned()
            } else {
                format!(
                    "`{name}` cannot be combined with `loop_factory` (the factory builds the \
                     runtime): remove `{name}`, or remove `loop_factory`"
                )
            };
            errors.push(error(setting, message));
        }
        if let Some((_, setting)) = start_paused {
            errors.push(error(
                setting,
                "`start_paused` cannot be combined with `loop_factory` (the factory builds the \
                 runtime): call `.start_paused(true)` on the factory's current-thread \
                 `tokio::runtime::Builder`, or remove `loop_factory`",
            ));
        }
        if let Some((_, setting)) = &name {
            errors.push(error(
                setting,
                "`name` cannot be combined with `loop_factory` (the factory builds the \
                 runtime): call `.name(\"...\")` on the factory's `tokio::runtime::Builder`, \
                 or remove `name`",
            ));
        }
        if let Value::Callable(expr) = &factory.value {
            return Runtime::Factory(expr.clone());
        }
    }

    let built = match (flavor, workers) {
        (None, None) => None,
        (Some(Flavor::MultiThread), workers) => {
            if let Some((_, setting)) = start_paused {
                // As in tokio: only a current-thread runtime's clock can be paused.
                errors.push(error(
                    setting,
                    "`start_paused` needs the current-thread runtime (tokio pauses the clock \
                     only there): remove `start_paused`, or remove `flavor = \"multi_thread\"`",
                ));
            }
            let at = raw
                .get(Key::Flavor)
                .map_or_else(Span::call_site, |s| s.key.span());
            return Runtime::Built(Built {
                flavor: BuiltFlavor::MultiThread(workers.map(|(n, _)| n), at),
                start_paused: None,
                name: name.map(|(name, _)| name),
            });
        }
        (Some(Flavor::CurrentThread), None) => Some(BuiltFlavor::CurrentThread),
        (Some(Flavor::CurrentThread), Some((_, setting))) => {
            errors.push(error(
                setting,
                "`worker_threads` needs `flavor = \"multi_thread\"` (a current-thread runtime \
                 has no workers): remove `worker_threads`, or write `flavor = \"multi_thread\"`",
            ));
            Some(BuiltFlavor::CurrentThread)
        }
        (Some(Flavor::Local), None) => Some(BuiltFlavor::Local),
        (Some(Flavor::Local), Some((_, setting))) => {
            errors.push(error(
                setting,
                "`worker_threads` needs `flavor = \"multi_thread\"` (a local runtime runs \
                 every task on its one thread): remove `worker_threads`, or write \
                 `flavor = \"multi_thread\"`",
            ));
            Some(BuiltFlavor::Local)
        }
        (None, Some((_, setting))) => {
            // The default is current-thread, like asyncio's loop; going multi-thread is a
            // choice the user spells out rather than one `worker_threads` implies.
            errors.push(error(
                setting,
                "`worker_threads` needs the multi-thread runtime: add `flavor = \"multi_thread\"` \
                 (the default flavor is \"current_thread\")",
            ));
            None
        }
    };
    // `false` is the default: nothing to build differently, and no tokio feature needed.
    let start_paused = match start_paused {
        Some((true, setting)) => Some(setting.key.span()),
        _ => None,
    };
    let name = name.map(|(name, _)| name);
    if built.is_none() && start_paused.is_none() && name.is_none() {
        return Runtime::Default;
    }
    Runtime::Built(Built {
        flavor: built.unwrap_or(BuiltFlavor::CurrentThread),
        start_paused,
        name,
    })
}

/// The rules between `grace_period`, `drain_delay` and the signal keys; the drain delay
/// that is left (a rejected one is reported and dropped).
fn shutdown_keys(
    raw: &Configuration,
    grace: Option<&DurationLit>,
    errors: &mut Errors,
) -> Option<DurationLit> {
    let off = |key| bool_setting(raw, key).is_some_and(|on| !on.value);
    let delay_setting = raw.get(Key::DrainDelay);
    let delay = duration_setting(raw, Key::DrainDelay);
    if let (Some(setting), true) = (delay_setting, off(Key::HandleSigterm)) {
        errors.push(error(
            setting,
            "`drain_delay` delays the cancel of a SIGTERM, which `handle_sigterm = false` \
             leaves unhandled: remove `drain_delay`, or remove `handle_sigterm = false`",
        ));
        return None;
    }
    if let Some(setting) = raw.get(Key::GracePeriod) {
        if off(Key::HandleSigint) && off(Key::HandleSigterm) {
            errors.push(error(
                setting,
                "`grace_period` counts from the first handled signal, and `handle_sigint = \
                 false, handle_sigterm = false` handle none: remove `grace_period`, or one of \
                 them",
            ));
        }
    }
    if let (Some(grace), Some(lit), Some(setting)) = (grace, delay.as_ref(), delay_setting) {
        if (lit.secs, lit.nanos) >= (grace.secs, grace.nanos) {
            errors.push(error(
                setting,
                "the grace period counts the drain delay, so a `drain_delay` as long as \
                 `grace_period` leaves no time to drain: make `drain_delay` shorter (a few \
                 seconds), or `grace_period` longer",
            ));
            return None;
        }
    }
    delay
}

fn bool_setting(raw: &Configuration, key: Key) -> Option<LitBool> {
    raw.get(key).and_then(|s| match &s.value {
        Value::Bool(lit) => Some(lit.clone()),
        _ => None,
    })
}

fn duration_setting(raw: &Configuration, key: Key) -> Option<DurationLit> {
    raw.get(key).and_then(|s| match &s.value {
        Value::Duration(duration) => Some(duration.clone()),
        _ => None,
    })
}

fn error(setting: &Setting, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(&setting.tokens, message)
}

/// The rules on the function: `async`, not `const`, no parameters, not generic. Returns
/// whether it can still be expanded into the fn that runs it (a missing `async` is reported
/// but does not stop that).
pub(crate) fn check_signature(kind: Macro, func: &AsyncFn, errors: &mut Errors) -> bool {
    let mut callable = true;
    let sig = &func.sig;
    let name = &sig.ident;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            format!("{kind} needs an `async fn`: write `async fn {name}`"),
        ));
    }
    if let Some(constness) = sig.constness {
        // The fn builds a runtime: it can never be `const`, and `const async fn` does not
        // exist either.
        callable = false;
        errors.push(syn::Error::new_spanned(
            constness,
            format!("a {kind} fn cannot be `const`: remove `const`"),
        ));
    }
    let receiver = sig.inputs.iter().find_map(|input| match input {
        syn::FnArg::Receiver(receiver) => Some(receiver),
        syn::FnArg::Typed(_) => None,
    });
    if let Some(receiver) = receiver {
        callable = false;
        errors.push(syn::Error::new_spanned(
            receiver,
            format!(
                "a {kind} fn cannot be a method: remove `self` and move `{name}` out of the \
                 `impl` block"
            ),
        ));
    } else if !sig.inputs.is_empty() || sig.variadic.is_some() {
        let advice = match kind {
            Macro::Main => "remove them, and read command-line arguments with `std::env::args()`",
            Macro::Test => "remove them (a test is called with no arguments)",
        };
        let mut params = sig.inputs.to_token_stream();
        sig.variadic.to_tokens(&mut params);
        callable = false;
        errors.push(syn::Error::new_spanned(
            params,
            format!("a {kind} fn takes no parameters: {advice}"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let mut generics = sig.generics.to_token_stream();
        sig.generics.where_clause.to_tokens(&mut generics);
        callable = false;
        errors.push(syn::Error::new_spanned(
            generics,
            format!("a {kind} fn cannot be generic: remove the generic parameters from `{name}`"),
        ));
    }
    callable
}

/// `#[test]`, `#[tokio::test]`, `#[runner::test]`, `#[::core::prelude::v1::test]`, ...:
/// any attribute whose path ends in `test`. `#[runner::test]` adds its own, and two would
/// run the test twice or not compile.
pub(crate) fn is_test_attribute(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "test")
}

/// The error for a test attribute next to `#[runner::test]`.
pub(crate) fn second_test_attribute(attr: &Attribute) -> syn::Error {
    let path = attr.path().to_token_stream().to_string().replace(' ', "");
    syn::Error::new_spanned(
        attr,
        format!("#[runner::test] already makes this fn a test: remove `#[{path}]`"),
    )
}
