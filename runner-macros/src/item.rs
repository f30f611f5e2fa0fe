//! The annotated function, read as signature and attributes only. The body stays a token
//! stream: parsing it would cost most of the expansion time (tokio-macros measured 13 ms
//! against 1 ms) and nothing here needs to look inside it.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{braced, token, Attribute, Signature, Visibility};

pub(crate) struct AsyncFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) brace: token::Brace,
    /// `#![...]` at the top of the body; they move to the generated fn.
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) body: TokenStream,
}

impl Parse for AsyncFn {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let content;
        let brace = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body: TokenStream = content.parse()?;
        Ok(AsyncFn {
            attrs,
            vis,
            sig,
            brace,
            inner_attrs,
            body,
        })
    }
}

impl AsyncFn {
    /// `{ body }` without the inner attributes, in the user's braces (same spans).
    pub(crate) fn block(&self) -> TokenStream {
        let mut tokens = TokenStream::new();
        self.brace
            .surround(&mut tokens, |tokens| self.body.to_tokens(tokens));
        tokens
    }

    /// The body exactly as written, inner attributes included.
    pub(crate) fn block_as_written(&self) -> TokenStream {
        let mut tokens = TokenStream::new();
        self.brace.surround(&mut tokens, |tokens| {
            for attr in &self.inner_attrs {
                attr.to_tokens(tokens);
            }
            self.body.to_tokens(tokens);
        });
        tokens
    }
}
