//! Step one: collect `key = value, ...` into a [`Configuration`] that remembers where each
//! value was written. A bad entry is reported and skipped, and parsing goes on with the next
//! one, so every mistake in the attribute is reported at once.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Token};

use crate::error::Errors;
use crate::keys::{self, Key, KeySpec, Macro};
use crate::value::{self, Value};

/// One `key = value` the user wrote.
pub(crate) struct Setting {
    pub(crate) spec: &'static KeySpec,
    /// The key as written: cross-key errors point at it.
    pub(crate) key: Ident,
    pub(crate) value: Value,
    /// `key = value` as written, for errors about the whole entry.
    pub(crate) tokens: TokenStream,
}

/// The settings of one attribute, at most one per key, in the order written.
#[derive(Default)]
pub(crate) struct Configuration {
    settings: Vec<Setting>,
}

impl Configuration {
    pub(crate) fn get(&self, key: Key) -> Option<&Setting> {
        self.settings.iter().find(|setting| setting.spec.key == key)
    }

    fn insert(&mut self, setting: Setting, errors: &mut Errors) {
        if self.get(setting.spec.key).is_some() {
            let name = setting.spec.name;
            errors.push(syn::Error::new(
                setting.key.span(),
                format!("`{name}` is set twice: keep only one `{name} = ...`"),
            ));
        } else {
            self.settings.push(setting);
        }
    }
}

/// Parses the attribute's arguments for `kind`; what cannot be read goes to `errors`.
pub(crate) fn parse(kind: Macro, args: TokenStream, errors: &mut Errors) -> Configuration {
    let mut config = Configuration::default();
    let parser = |input: ParseStream| {
        parse_entries(kind, input, &mut config, errors);
        Ok(())
    };
    // `parse_entries` consumes every token, so this cannot fail; keep any error anyway.
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    config
}

fn parse_entries(kind: Macro, input: ParseStream, config: &mut Configuration, errors: &mut Errors) {
    while !input.is_empty() {
        match parse_entry(kind, input) {
            Ok(Some(setting)) => config.insert(setting, errors),
            Ok(None) => {}
            Err(error) => {
                errors.push(error);
                skip_past_comma(input);
                continue;
            }
        }
        if input.is_empty() {
            break;
        }
        if input.parse::<Token![,]>().is_err() {
            errors.push(
                input.error("expected `,` between keys: write `debug = true, timeout = \"5s\"`"),
            );
            skip_past_comma(input);
        }
    }
}

/// One `key = value`, or `None` if the key was reported (unknown or for the other macro)
/// and its value skipped.
fn parse_entry(kind: Macro, input: ParseStream) -> syn::Result<Option<Setting>> {
    let Ok(key) = input.call(Ident::parse_any) else {
        return Err(input.error(format!(
            "expected a key such as `debug = true`; valid keys for {kind} are: {}",
            keys::valid_keys(kind)
        )));
    };
    let name = key.unraw().to_string();
    let Some(spec) = keys::lookup(&name) else {
        if let Some(why) = keys::not_taken(&name) {
            return Err(syn::Error::new(key.span(), why));
        }
        let typo = keys::suggest(kind, &name)
            .map(|near| format!(" (did you mean `{near}`?)"))
            .unwrap_or_default();
        return Err(syn::Error::new(
            key.span(),
            format!(
                "unknown attribute `{name}`{typo}; valid keys for {kind} are: {}",
                keys::valid_keys(kind)
            ),
        ));
    };
    if !spec.applies_to(kind) {
        return Err(syn::Error::new(
            key.span(),
            format!(
                "`{name}` only applies to {}: remove it here; valid keys for {kind} are: {}",
                kind.other(),
                keys::valid_keys(kind)
            ),
        ));
    }
    if input.is_empty() || input.peek(Token![,]) {
        return Err(syn::Error::new(
            key.span(),
            format!("`{name}` needs a value: write `{}`", spec.example),
        ));
    }
    let Ok(eq) = input.parse::<Token![=]>() else {
        return Err(input.error(format!(
            "expected `=` after `{name}`: write `{}`",
            spec.example
        )));
    };
    let expr: Expr = match input.parse() {
        Ok(expr) => expr,
        Err(error) => {
            return Err(syn::Error::new(
                error.span(),
                format!("expected a value for `{name}`: write `{}`", spec.example),
            ))
        }
    };
    let value = value::parse(spec, &expr)?;
    Ok(Some(Setting {
        spec,
        tokens: quote!(#key #eq #expr),
        key,
        value,
    }))
}

/// Error recovery: drop tokens up to and including the next top-level comma.
fn skip_past_comma(input: ParseStream) {
    let skipped = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((token, next)) = rest.token_tree() {
            rest = next;
            if matches!(&token, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
        }
        Ok(((), rest))
    });
    // `step` only fails if the closure does; ours never does.
    drop(skipped);
}
