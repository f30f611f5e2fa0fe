//! Reads the expression after `key =` as the kind of value the key's table row asks for.
//! Every error names what was found and shows what to write instead.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Expr, Lit, LitBool, LitStr, UnOp};

use crate::keys::{self, Key, KeySpec, Kind};

/// A key's value, typed by its [`Kind`].
pub(crate) enum Value {
    Bool(LitBool),
    /// The user's expression (`loop_factory`, `exception_handler`), kept with its spans so
    /// type errors land on it.
    Callable(Expr),
    Flavor(Flavor),
    Count(Count),
    Duration(DurationLit),
    /// The runtime's name, as written (tokio's `Builder::name` takes it as it is).
    Name(LitStr),
    /// The crate path, located at the string literal it came from.
    Path(TokenStream),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
    /// tokio's `LocalRuntime`.
    Local,
}

/// A positive integer literal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Count {
    pub(crate) value: usize,
    pub(crate) span: Span,
}

/// A duration string, computed at compile time.
#[derive(Clone, Debug)]
pub(crate) struct DurationLit {
    pub(crate) secs: u64,
    pub(crate) nanos: u32,
    pub(crate) span: Span,
    /// The string as the user wrote it (a test's timeout message quotes it).
    pub(crate) text: String,
}

/// Parses `expr` as the value of `spec`.
pub(crate) fn parse(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    match spec.kind {
        Kind::Bool => bool_value(spec, expr),
        Kind::Factory => callable(
            spec,
            expr,
            "a fn returning a tokio `Runtime`, `io::Result<Runtime>` or `runtime::Builder`",
        ),
        Kind::Handler => callable(spec, expr, "a fn taking `&runner::Report`"),
        Kind::Flavor => flavor(spec, expr),
        Kind::Name => runtime_name(spec, expr),
        Kind::Count => count(spec, expr),
        Kind::Duration => duration(spec, expr),
        Kind::Path => crate_path(spec, expr),
    }
}

fn bool_value(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    let name = spec.name;
    match literal(expr) {
        Some(Lit::Bool(lit)) => Ok(Value::Bool(lit.clone())),
        Some(Lit::Str(s)) if matches!(s.value().as_str(), "true" | "false") => Err(error(
            expr,
            format!(
                "`{name}` takes a bool, not a string: write `{name} = {}` without the quotes",
                s.value()
            ),
        )),
        _ => Err(error(
            expr,
            format!(
                "`{name}` takes `true` or `false`, not {}: write `{}`",
                describe(expr),
                spec.example
            ),
        )),
    }
}

/// A path or a closure; `what` says what it must be, for the message on a literal.
fn callable(spec: &KeySpec, expr: &Expr, what: &str) -> syn::Result<Value> {
    let name = spec.name;
    match literal(expr) {
        None => Ok(Value::Callable(expr.clone())),
        Some(Lit::Str(s)) => {
            let written = s.value();
            let hint = if !written.trim().is_empty() && syn::parse_str::<Expr>(&written).is_ok() {
                format!("`{name} = {}`", written.trim())
            } else {
                format!("`{}`", spec.example)
            };
            Err(error(
                expr,
                format!(
                    "`{name}` takes a path or a closure, not a string: write {hint} without the quotes"
                ),
            ))
        }
        Some(_) => Err(error(
            expr,
            format!(
                "`{name}` takes a path or a closure, not {}: write `{}` ({what}) or `{name} = |..| ...`",
                describe(expr),
                spec.example
            ),
        )),
    }
}

fn flavor(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    const CHOICES: &str = "`flavor = \"current_thread\"` (the default), \
                           `flavor = \"multi_thread\"` or `flavor = \"local\"`";
    const FLAVORS: [&str; 3] = ["current_thread", "multi_thread", "local"];
    if let Some(Lit::Str(s)) = literal(expr) {
        return match s.value().as_str() {
            "current_thread" => Ok(Value::Flavor(Flavor::CurrentThread)),
            "multi_thread" => Ok(Value::Flavor(Flavor::MultiThread)),
            "local" => Ok(Value::Flavor(Flavor::Local)),
            other => {
                let typo = keys::closest(other, FLAVORS.into_iter())
                    .map(|near| format!(" (did you mean \"{near}\"?)"))
                    .unwrap_or_default();
                Err(error(
                    s,
                    format!("unknown flavor {other:?}{typo}: write {CHOICES}"),
                ))
            }
        };
    }
    let message = match bare_ident(expr).as_deref() {
        Some(written @ ("current_thread" | "multi_thread" | "local")) => {
            format!(
                "`{}` takes a string: write `flavor = \"{written}\"` with the quotes",
                spec.name
            )
        }
        _ => format!(
            "`{}` takes a string, not {}: write {CHOICES}",
            spec.name,
            describe(expr)
        ),
    };
    Err(error(expr, message))
}

/// tokio's `Builder::name` panics on a name that is empty or only whitespace (`str::trim`):
/// here that is a compile error at the string.
fn runtime_name(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    let name = spec.name;
    match literal(expr) {
        Some(Lit::Str(s)) if s.value().trim().is_empty() => {
            let what = if s.value().is_empty() {
                "empty"
            } else {
                "only whitespace"
            };
            Err(error(
                s,
                format!(
                    "a runtime `{name}` cannot be {what} (tokio refuses it): write a name, \
                     e.g. `{}`, or remove `{name}`",
                    spec.example
                ),
            ))
        }
        Some(Lit::Str(s)) => Ok(Value::Name(s.clone())),
        _ => {
            let note = match ungroup(expr) {
                Expr::Path(_) => " (a macro cannot see the value of a constant)",
                _ => "",
            };
            Err(error(
                expr,
                format!(
                    "`{name}` takes a string literal, not {}{note}: write `{}`",
                    describe(expr),
                    spec.example
                ),
            ))
        }
    }
}

fn count(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    let name = spec.name;
    match literal(expr) {
        Some(Lit::Int(int)) => {
            if !matches!(int.suffix(), "" | "usize") {
                return Err(error(
                    int,
                    format!(
                        "`{name}` takes a plain integer: write `{name} = {}` without the `{}` suffix",
                        int.base10_digits(),
                        int.suffix()
                    ),
                ));
            }
            match int.base10_parse::<usize>() {
                Ok(0) => Err(error(
                    int,
                    format!(
                        "`{name}` must be at least 1 (the multi-thread runtime needs a worker): \
                         write `{name} = 1` or more"
                    ),
                )),
                Ok(value) => Ok(Value::Count(Count {
                    value,
                    span: int.span(),
                })),
                Err(_) => Err(error(
                    int,
                    format!(
                        "`{name} = {}` is too large: write `{}`",
                        int.base10_digits(),
                        spec.example
                    ),
                )),
            }
        }
        Some(Lit::Str(s)) => {
            let hint = match s.value().trim().parse::<usize>() {
                Ok(n) if n > 0 => format!("`{name} = {n}` without the quotes"),
                _ => format!("`{}`", spec.example),
            };
            Err(error(
                expr,
                format!("`{name}` takes an integer literal, not a string: write {hint}"),
            ))
        }
        _ => {
            let note = match expr {
                Expr::Path(_) => " (a macro cannot see the value of a constant)",
                _ => "",
            };
            Err(error(
                expr,
                format!(
                    "`{name}` takes an integer literal, not {}{note}: write `{}`",
                    describe(expr),
                    spec.example
                ),
            ))
        }
    }
}

fn duration(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    let name = spec.name;
    match literal(expr) {
        Some(Lit::Str(s)) => match parse_duration(&s.value()) {
            Ok((0, 0)) if spec.key == Key::Timeout => Err(error(
                s,
                format!(
                    "a `{name}` of zero fails every test: write `{}`",
                    spec.example
                ),
            )),
            Ok((0, 0)) if spec.key == Key::ShutdownReportAfter => Err(error(
                s,
                format!(
                    "a `{name}` of zero would report at every moment of every shutdown: write \
                     `{}` (the default), or a longer duration",
                    spec.example
                ),
            )),
            Ok((0, 0)) if spec.key == Key::GracePeriod => Err(error(
                s,
                format!(
                    "a `{name}` of zero would force the exit at the first signal, before any \
                     cleanup: write `{}` (a little below the orchestrator's own limit, such as \
                     Kubernetes' terminationGracePeriodSeconds), or remove it",
                    spec.example
                ),
            )),
            Ok((0, 0)) if spec.key == Key::DrainDelay => Err(error(
                s,
                format!(
                    "a `{name}` of zero is no delay: remove it, or write `{}`",
                    spec.example
                ),
            )),
            Ok((secs, nanos)) => Ok(Value::Duration(DurationLit {
                secs,
                nanos,
                span: s.span(),
                text: s.value(),
            })),
            Err(DurationError::Format)
                if !s.value().is_empty()
                    && s.value().bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
            {
                Err(error(
                    s,
                    format!(
                        "`{name}` needs a unit after the number: write `{name} = \"{}ms\"` \
                         (or s, or m)",
                        s.value()
                    ),
                ))
            }
            Err(DurationError::Format) => Err(error(
                s,
                format!(
                    "`{name}` takes a duration like \"500ms\", \"1.5s\" or \"2m\" (a number, \
                     then ms, s or m), not {:?}: write `{}`",
                    s.value(),
                    spec.example
                ),
            )),
            Err(DurationError::Overflow) => Err(error(
                s,
                format!(
                    "`{name} = {:?}` is too long or too precise (the limits are 2^64 seconds and \
                     one nanosecond): write `{}`",
                    s.value(),
                    spec.example
                ),
            )),
        },
        Some(Lit::Int(int)) => Err(error(
            expr,
            format!(
                "`{name}` takes a string with a unit, not a bare number: write `{name} = \"{}s\"` \
                 (or ms, or m)",
                int.base10_digits()
            ),
        )),
        _ => Err(error(
            expr,
            format!(
                "`{name}` takes a duration string, not {}: write `{}`",
                describe(expr),
                spec.example
            ),
        )),
    }
}

fn crate_path(spec: &KeySpec, expr: &Expr) -> syn::Result<Value> {
    let name = spec.name;
    if let Some(Lit::Str(s)) = literal(expr) {
        return match s.parse_with(syn::Path::parse_mod_style) {
            Ok(path) => Ok(Value::Path(located_at(path.into_token_stream(), s.span()))),
            Err(_) => Err(error(
                s,
                format!(
                    "`{name} = {:?}` is not a path: write the path of the runner crate, e.g. `{}`",
                    s.value(),
                    spec.example
                ),
            )),
        };
    }
    let hint = match ungroup(expr) {
        Expr::Path(path) if path.attrs.is_empty() && path.qself.is_none() => format!(
            "`{name} = \"{}\"` with the quotes",
            path.path.to_token_stream().to_string().replace(' ', "")
        ),
        _ => format!("`{}`", spec.example),
    };
    Err(error(
        expr,
        format!(
            "`{name}` takes the path of the runner crate as a string, not {}: write {hint}",
            describe(expr)
        ),
    ))
}

enum DurationError {
    Format,
    Overflow,
}

/// `"<n>ms"`, `"<n>s"` or `"<n>m"`, where `<n>` is digits with an optional decimal part
/// (`"1.5s"`, `"0.25m"`), as whole seconds and nanoseconds.
fn parse_duration(text: &str) -> Result<(u64, u32), DurationError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => return Err(DurationError::Format),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty());
    if !well_formed {
        return Err(DurationError::Format);
    }
    // Exact arithmetic in nanoseconds: `"0.1s"` is 100 ms, not 99.999... ms.
    let whole: u128 = whole.parse().map_err(|_| DurationError::Overflow)?;
    let mut nanos = whole
        .checked_mul(nanos_per_unit)
        .ok_or(DurationError::Overflow)?;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes() {
        if scale % 10 != 0 {
            // A digit finer than a nanosecond; zeros there change nothing.
            if digit != b'0' {
                return Err(DurationError::Overflow);
            }
            continue;
        }
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    // Less than 10^9 by construction.
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok((secs, subsec))
}

/// The literal `expr` is, looking through the invisible groups `macro_rules!` adds.
fn literal(expr: &Expr) -> Option<&Lit> {
    match ungroup(expr) {
        Expr::Lit(lit) if lit.attrs.is_empty() => Some(&lit.lit),
        _ => None,
    }
}

fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

fn bare_ident(expr: &Expr) -> Option<String> {
    match ungroup(expr) {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().map(ToString::to_string),
        _ => None,
    }
}

/// "a string", "a path", ...: what the user wrote, for "takes X, not Y" messages.
pub(crate) fn describe(expr: &Expr) -> &'static str {
    match ungroup(expr) {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(_) => "a string",
            Lit::ByteStr(_) | Lit::CStr(_) => "a byte string",
            Lit::Int(_) => "an integer",
            Lit::Float(_) => "a float",
            Lit::Bool(_) => "a bool",
            Lit::Char(_) | Lit::Byte(_) => "a character",
            _ => "a literal",
        },
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => "a negative number",
        Expr::Path(_) => "a path",
        Expr::Closure(_) => "a closure",
        _ => "an expression",
    }
}

fn error(tokens: impl ToTokens, message: String) -> syn::Error {
    syn::Error::new_spanned(tokens, message)
}

/// Re-spans tokens parsed out of a string literal: errors point at the literal, while
/// name resolution and lints treat them as macro output (so `unused_qualifications`
/// does not fire on the expansion).
fn located_at(tokens: TokenStream, literal: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), located_at(group.stream(), literal));
                new.set_span(Span::call_site().located_at(literal));
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(Span::call_site().located_at(literal));
                other
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_numbers_with_a_unit() {
        let ok = |text: &str| match parse_duration(text) {
            Ok(parsed) => parsed,
            Err(_) => panic!("{text} was refused"),
        };
        assert_eq!(ok("500ms"), (0, 500_000_000));
        assert_eq!(ok("30s"), (30, 0));
        assert_eq!(ok("2m"), (120, 0));
        assert_eq!(ok("0s"), (0, 0));
        assert_eq!(ok("1.5s"), (1, 500_000_000));
        assert_eq!(ok("0.1s"), (0, 100_000_000));
        assert_eq!(ok("250ms"), (0, 250_000_000));
        assert_eq!(ok("0.5ms"), (0, 500_000));
        assert_eq!(ok("1.25m"), (75, 0));
        assert_eq!(ok("0.000000001s"), (0, 1));
        assert_eq!(ok("1.000000000000s"), (1, 0));
        for bad in [
            "",
            "s",
            "10",
            "10 s",
            "10 parsecs",
            "-1s",
            "+1s",
            "1h",
            "ms10",
            ".5s",
            "1.s",
            "1..5s",
            "1.5.5s",
            "1,5s",
            "1e3ms",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Format)),
                "{bad}"
            );
        }
        for too_much in [
            "18446744073709551616s",
            "999999999999999999999m",
            "99999999999999999999999999999999999999999ms",
            "0.0000000001s",
        ] {
            assert!(
                matches!(parse_duration(too_much), Err(DurationError::Overflow)),
                "{too_much}"
            );
        }
    }
}
