//! The `#[runner::main]` and `#[runner::test]` attribute macros (placeholder).
#![deny(missing_docs)]
use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_attribute]
pub fn main(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder.
#[proc_macro_attribute]
pub fn test(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
