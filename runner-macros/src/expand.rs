//! Step three: write the plain fn that runs the async body on a `Runner`.
//!
//! ```text
//! #[runner::main(flavor = "multi_thread")]      fn main() -> R {
//! async fn main() -> R { body }           =>        ::runner::__private::block_main(
//!                                                       ::runner::Runner::builder().loop_factory(..),
//!                                                       async move { let ret: R = { body }; ret },
//!                                                   )
//!                                               }
//! ```
//!
//! `let ret: R = { body }` gives the body the fn's return type before anything else is
//! inferred, so `?` converts errors as in any fn, and a body of the wrong type is an error
//! at the user's expression rather than at the attribute.

use proc_macro2::{Ident, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

use crate::attr;
use crate::error::Errors;
use crate::item::AsyncFn;
use crate::keys::Macro;
use crate::valid::{self, Built, BuiltFlavor, Config, Runtime};
use crate::value::DurationLit;

/// The whole macro as a `proc_macro2` function: attribute arguments and item in, the
/// expansion out. Never panics; on any error the output is the function (so IDEs keep
/// working) plus one `compile_error!` per problem found, and nothing else fails to compile.
pub(crate) fn expand(kind: Macro, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let raw = attr::parse(kind, args, &mut errors);
    let config = valid::build(&raw, &mut errors);

    let mut func: AsyncFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let example = match kind {
                Macro::Main => "main",
                Macro::Test => "my_test",
            };
            errors.push(syn::Error::new(
                error.span(),
                format!("{kind} goes on an `async fn` with a body: write `{kind} async fn {example}() {{ .. }}`"),
            ));
            // Not a fn: leave the item as it was.
            let mut output = errors.to_compile_errors();
            output.extend(item);
            return output;
        }
    };
    let callable = valid::check_signature(kind, &func, &mut errors);
    if kind == Macro::Test {
        // Reported, then dropped, so the expansion below is the only test.
        func.attrs.retain(|attr| {
            let other_test = valid::is_test_attribute(attr);
            if other_test {
                errors.push(valid::second_test_attribute(attr));
            }
            !other_test
        });
    }

    let function = if callable {
        function(kind, &config, &func, Role::EntryPoint)
    } else {
        shell(kind, &config, &func)
    };
    let errors = errors.to_compile_errors();
    quote!(#function #errors)
}

/// What the generated fn is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The real thing: a test (with `#[runner::test]`) or an entry point.
    EntryPoint,
    /// A fn whose signature was rejected: the same sync fn, so that its body and its
    /// callers are checked as they will be once the error is fixed, but neither a test nor
    /// an unused-fn warning.
    Rejected,
}

/// The sync fn that runs the body on a Runner.
fn function(kind: Macro, config: &Config, func: &AsyncFn, role: Role) -> TokenStream {
    let krate = config.krate.clone().unwrap_or_else(|| quote!(::runner));
    let builder = builder(kind, config, &krate);
    let (helpers, future) = future(func);
    let call = match kind {
        Macro::Main => quote! {
            #krate::__private::block_main(#builder, #future)
        },
        Macro::Test => {
            // The limit and the string the user wrote, which the failure message quotes.
            let timeout = option(config.timeout.clone().map(|limit| {
                let mut text = Literal::string(&limit.text);
                text.set_span(limit.span);
                let limit = duration(limit);
                quote!((#limit, #text))
            }));
            quote! {
                #krate::__private::block_test(#builder, #timeout, #future)
            }
        }
    };
    let AsyncFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        ..
    } = func;
    let mut sig = sig.clone();
    sig.asyncness = None;
    // Rejected (see `valid`); a `const fn` around a runtime would add rustc's errors.
    sig.constness = None;
    let test_attr = match role {
        Role::EntryPoint => test_attr(kind),
        Role::Rejected => quote!(#[allow(dead_code)]),
    };
    // The user's braces, not generated ones: rustc takes the fn's span from its first and
    // last tokens, and a fn whose span ends in macro-generated tokens is exempt from
    // `dead_code`. With these, an unused annotated fn warns as it would without the attribute.
    let mut body = TokenStream::new();
    func.brace.surround(&mut body, |body| {
        body.extend(quote! {
            #(#inner_attrs)*
            #helpers
            #call
        });
    });
    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig #body
    }
}

/// For a signature that cannot be run (parameters, a receiver, generics): the sync fn the
/// attribute makes, not made a test, so its body is still checked (and IDEs still see it)
/// and its callers, or the trait it implements, see the signature they will see once the
/// error is fixed: rustc adds no error of its own (an `async fn` left as written would be
/// "incompatible type for trait" in a trait impl, and a future at every call). A free `main`
/// is the exception: rustc checks an entry point's shape, so a plain `fn main()` wraps the
/// fn as written instead.
fn shell(kind: Macro, config: &Config, func: &AsyncFn) -> TokenStream {
    let AsyncFn {
        attrs, vis, sig, ..
    } = func;
    let has_receiver = sig
        .inputs
        .iter()
        .any(|input| matches!(input, syn::FnArg::Receiver(_)));
    let entry_point = kind == Macro::Main
        && sig.ident == "main"
        && !has_receiver
        && !mentions_self_type(sig.to_token_stream());
    if !entry_point {
        return function(kind, config, func, Role::Rejected);
    }
    let body = func.block_as_written();
    // `const` is rejected, and `const async fn` would be rustc's error on top of runner's.
    let mut inner = sig.clone();
    inner.constness = None;
    let as_written = quote! {
        #[allow(dead_code)]
        #(#attrs)*
        #vis #inner #body
    };
    let mut outer = inner.clone();
    outer.asyncness = None;
    outer.generics = syn::Generics::default();
    outer.inputs = syn::punctuated::Punctuated::new();
    outer.variadic = None;
    let mut shell_body = TokenStream::new();
    func.brace.surround(&mut shell_body, |tokens| {
        tokens.extend(quote! {
            #as_written
            ::core::unreachable!()
        });
    });
    quote! {
        #vis #outer #shell_body
    }
}

/// Whether `Self` appears: such a signature cannot move into a nested item.
fn mentions_self_type(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "Self",
        TokenTree::Group(group) => mentions_self_type(group.stream()),
        _ => false,
    })
}

fn test_attr(kind: Macro) -> TokenStream {
    match kind {
        Macro::Main => TokenStream::new(),
        Macro::Test => quote!(#[::core::prelude::v1::test]),
    }
}

/// `::runner::Runner::builder()` plus one call per key that was set.
fn builder(kind: Macro, config: &Config, krate: &TokenStream) -> TokenStream {
    let mut builder = quote!(#krate::Runner::builder());
    if let Some(debug) = &config.debug {
        let debug = option(Some(debug.to_token_stream()));
        builder = quote!(#builder.debug(#debug));
    }
    if let Some(timeout) = config.shutdown_timeout.clone() {
        let timeout = duration(timeout);
        builder = quote!(#builder.shutdown_timeout(#timeout));
    }
    if let Some(threshold) = config.shutdown_report_after.clone() {
        let threshold = duration(threshold);
        builder = quote!(#builder.shutdown_report_after(#threshold));
    }
    if let (Macro::Main, Some(on)) = (kind, &config.handle_sigint) {
        builder = quote!(#builder.handle_sigint(#on));
    }
    if let (Macro::Main, Some(on)) = (kind, &config.handle_sigterm) {
        builder = quote!(#builder.handle_sigterm(#on));
    }
    if let (Macro::Main, Some(grace)) = (kind, config.grace_period.clone()) {
        let grace = duration(grace);
        builder = quote!(#builder.grace_period(#grace));
    }
    if let (Macro::Main, Some(delay)) = (kind, config.drain_delay.clone()) {
        let delay = duration(delay);
        builder = quote!(#builder.drain_delay(#delay));
    }
    if let Some(threshold) = config.slow_callback_duration.clone() {
        let threshold = duration(threshold);
        builder = quote!(#builder.slow_callback_duration(#threshold));
    }
    if let Some(handler) = &config.exception_handler {
        // As for `loop_factory` below: the call carries the expression's span, so a
        // handler of the wrong type is an error at the user's path or closure.
        let span = handler.span();
        builder = quote_spanned!(span=> #builder.exception_handler(#handler));
    }
    match &config.runtime {
        Runtime::Default => builder,
        Runtime::Built(built) => {
            let factory = built_runtime(built, krate);
            quote!(#builder.loop_factory(#factory))
        }
        Runtime::Factory(expr) => {
            // The user's tokens, spans and all. The call gets the expression's span too:
            // rustc reports an unmet `IntoRuntime` bound at the call, so a factory of the
            // wrong type is an error at the user's path or closure, not at the attribute.
            let span = expr.span();
            quote_spanned!(span=> #builder.loop_factory(#expr))
        }
    }
}

/// The loop factory for a runtime built from the keys: one of runner's ready-made ones when
/// only the flavor was given, else a closure that builds it in the user's crate.
fn built_runtime(built: &Built, krate: &TokenStream) -> TokenStream {
    let Built {
        flavor,
        start_paused,
        name,
    } = built;
    match (flavor, start_paused, name) {
        (BuiltFlavor::CurrentThread, None, None) => {
            return quote!(#krate::__private::current_thread);
        }
        (BuiltFlavor::Local, None, None) => return quote!(#krate::__private::local),
        _ => {}
    }
    let new = match flavor {
        BuiltFlavor::CurrentThread | BuiltFlavor::Local => {
            quote!(#krate::__private::RuntimeBuilder::new_current_thread)
        }
        // Built here, in the user's crate, through runner's alias of tokio's builder: it
        // compiles exactly when the build's tokio has `rt-multi-thread`, whoever turned it
        // on. Without it, the call resolves to runner's stand-in, whose error names the
        // feature; located at `flavor`, that error points at the key.
        BuiltFlavor::MultiThread(_, at) => located(
            quote!(#krate::__private::RuntimeBuilder::new_multi_thread),
            *at,
        ),
    };
    let mut calls = TokenStream::new();
    if let Some(at) = start_paused {
        // As for the multi-thread builder above: tokio's `start_paused` exists only with its
        // `test-util` feature, which comes from the user's tokio (as for
        // `#[tokio::test(start_paused = true)]`); without it, runner's stand-in reports the
        // feature at the `start_paused` key.
        let start_paused = located(quote!(start_paused), *at);
        calls.extend(quote!(.#start_paused(true)));
    }
    if let Some(name) = name {
        // Checked at compile time: tokio's `name` panics on an empty name.
        calls.extend(quote!(.name(#name)));
    }
    // Each builder method gives `&mut Builder`; with none, borrow the builder itself.
    let builder = if calls.is_empty() {
        quote!(&mut #new())
    } else {
        quote!(#new() #calls)
    };
    let features = match (flavor, start_paused) {
        (BuiltFlavor::MultiThread(..), _) | (_, Some(_)) => builder_features(krate),
        _ => TokenStream::new(),
    };
    let build = match flavor {
        BuiltFlavor::Local => quote!(#krate::__private::build_local(#builder)),
        BuiltFlavor::MultiThread(workers, _) => {
            let workers = option(workers.map(|count| {
                let mut n = Literal::usize_suffixed(count.value);
                n.set_span(count.span);
                n.into_token_stream()
            }));
            quote!(#krate::__private::build(#builder, #workers))
        }
        BuiltFlavor::CurrentThread => {
            quote!(#krate::__private::build(#builder, ::core::option::Option::None))
        }
    };
    quote!(|| {
        #features
        #build
    })
}

/// Brings runner's stand-ins for tokio's feature-gated `Builder` methods into scope (see
/// `runner::__private::BuilderFeatures`). With the feature on, tokio's own method is chosen
/// and the import is unused.
fn builder_features(krate: &TokenStream) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #krate::__private::BuilderFeatures as _;
    }
}

/// `tokens` with every span located at `at` (resolved as the attribute's own tokens), so
/// that a type error in them is reported at the key the user wrote.
fn located(tokens: TokenStream, at: Span) -> TokenStream {
    let at = Span::call_site().located_at(at);
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(at);
            token
        })
        .collect()
}

fn option(value: Option<TokenStream>) -> TokenStream {
    if let Some(value) = value {
        quote!(::core::option::Option::Some(#value))
    } else {
        quote!(::core::option::Option::None)
    }
}

/// `Duration::new(secs, nanos)`, computed at compile time, located at the user's string.
fn duration(value: DurationLit) -> TokenStream {
    let mut secs = Literal::u64_suffixed(value.secs);
    secs.set_span(value.span);
    let mut nanos = Literal::u32_suffixed(value.nanos);
    nanos.set_span(value.span);
    quote!(::core::time::Duration::new(#secs, #nanos))
}

/// The future to run, and any items it needs declared before it.
fn future(func: &AsyncFn) -> (TokenStream, TokenStream) {
    let block = func.block();
    let ret = Ident::new("__runner_output", Span::mixed_site());
    let (helpers, ty) = match &func.sig.output {
        ReturnType::Default => (TokenStream::new(), quote!(())),
        ReturnType::Type(_, ty) if is_never(ty) => {
            // `!` cannot be written as a `let` type on stable, but it can be named as the
            // output of `fn() -> !`, which keeps the check that the body never returns.
            let never = Ident::new("__RunnerNever", Span::call_site());
            (
                quote! {
                    trait #never { type Output; }
                    impl<T> #never for fn() -> T { type Output = T; }
                },
                quote!(<fn() -> #ty as #never>::Output),
            )
        }
        // `impl Trait` cannot be a `let` type: the body's own type is the output.
        ReturnType::Type(_, ty) if mentions_impl(ty.to_token_stream()) => {
            return (TokenStream::new(), quote!(async move #block));
        }
        ReturnType::Type(_, ty) => (TokenStream::new(), ty.to_token_stream()),
    };
    // After a body that never returns (a server loop) the generated tail is unreachable;
    // the allow is on that tail only, so the user's own unreachable code still warns.
    // Clippy reads a body in a `let` as a sub-expression and would flag a body that ends
    // in `panic!()`; in the user's fn it was the whole body, so that lint is off here.
    let future = quote! {
        async move {
            #[allow(clippy::diverging_sub_expression)]
            let #ret: #ty = #block;
            #[allow(unreachable_code)]
            #ret
        }
    };
    (helpers, future)
}

fn is_never(ty: &Type) -> bool {
    match ty {
        Type::Never(_) => true,
        Type::Paren(inner) => is_never(&inner.elem),
        Type::Group(inner) => is_never(&inner.elem),
        _ => false,
    }
}

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}
