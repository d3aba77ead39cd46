//! # catena-macros
//!
//! `#[tool]` turns an `async fn` into a catena tool: a unit struct named after the function in
//! CamelCase implementing `TypedTool`, an arguments struct made of its parameters (deriving
//! `Deserialize` and `JsonSchema`), the function's doc comment as the tool's description and each
//! parameter's doc comment as that argument's description in the JSON Schema the model sees.
//! Use it through `catena::core::tool` (or `catena_core::tool`); the documentation and a
//! runnable example are there.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{Attribute, Expr, FnArg, ItemFn, Lit, Meta, Pat, Type, parse_macro_input};

/// See the crate docs, and `catena_core::tool` for an example.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = parse_macro_input!(attr as ToolAttr);
    let function = parse_macro_input!(item as ItemFn);
    expand(options, function).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// `#[tool]` or `#[tool(name = "...")]`.
struct ToolAttr {
    name: Option<String>,
}

impl syn::parse::Parse for ToolAttr {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let mut name = None;
        let metas = syn::punctuated::Punctuated::<Meta, syn::Token![,]>::parse_terminated(input)?;
        for meta in metas {
            match meta {
                Meta::NameValue(nv) if nv.path.is_ident("name") => match &nv.value {
                    Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => name = Some(s.value()),
                    other => return Err(syn::Error::new_spanned(other, "`name` takes a string")),
                },
                other => return Err(syn::Error::new_spanned(other, "#[tool] accepts only `name = \"...\"`")),
            }
        }
        Ok(Self { name })
    }
}

/// The text of the `///` comments among `attrs`, lines joined by spaces.
fn doc_text(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The path the user's crate reaches catena-core by.
fn core_path() -> TokenStream2 {
    use proc_macro_crate::{FoundCrate, crate_name};
    if let Ok(found) = crate_name("catena") {
        let name = match found {
            FoundCrate::Itself => format_ident!("catena"),
            FoundCrate::Name(n) => format_ident!("{}", n),
        };
        return quote!(::#name::core);
    }
    match crate_name("catena-core") {
        Ok(FoundCrate::Name(n)) => {
            let name = format_ident!("{}", n);
            quote!(::#name)
        }
        _ => quote!(::catena_core),
    }
}

fn is_run_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => match r.elem.as_ref() {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "RunContext"),
            _ => false,
        },
        _ => false,
    }
}

fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

fn expand(options: ToolAttr, mut function: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(sig.fn_token, "#[tool] needs an `async fn`"));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&sig.generics, "#[tool] functions cannot be generic"));
    }
    let description = doc_text(&function.attrs);
    if description.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            "#[tool] needs a doc comment on the function: it is the description the model reads",
        ));
    }
    let fn_name = sig.ident.clone();
    let tool_name = options.name.unwrap_or_else(|| fn_name.to_string());
    let struct_name = syn::Ident::new(&camel_case(&fn_name.to_string()), fn_name.span());
    let args_name = format_ident!("{}Args", struct_name);
    let vis = function.vis.clone();
    let core = core_path();
    let serde_path = format!("{core}::__private::serde").replace(' ', "");
    let schemars_path = format!("{core}::__private::schemars").replace(' ', "");

    let mut fields = Vec::new();
    let mut call_args = Vec::new();
    for input in &mut function.sig.inputs {
        let FnArg::Typed(param) = input else {
            return Err(syn::Error::new_spanned(input, "#[tool] functions are free functions (no `self`)"));
        };
        if is_run_context(&param.ty) {
            call_args.push(quote!(ctx));
            continue;
        }
        let Pat::Ident(ident) = param.pat.as_ref() else {
            return Err(syn::Error::new_spanned(&param.pat, "#[tool] parameters must be plain names"));
        };
        let name = &ident.ident;
        let ty = &param.ty;
        // Doc comments on parameters become the argument's description; they are moved off the
        // function, where Rust does not accept them.
        let docs: Vec<Attribute> = param.attrs.iter().filter(|a| a.path().is_ident("doc")).cloned().collect();
        param.attrs.retain(|a| !a.path().is_ident("doc"));
        fields.push(quote!(#(#docs)* pub #name: #ty));
        call_args.push(quote!(args.#name));
    }
    let tool_doc = format!("The `{tool_name}` tool, generated by `#[tool]` from [`{fn_name}`].");
    let args_doc = format!("Arguments of the `{tool_name}` tool.");
    let name_lit = syn::LitStr::new(&tool_name, Span::call_site());
    let description_lit = syn::LitStr::new(&description, Span::call_site());

    Ok(quote! {
        #function

        #[doc = #tool_doc]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #struct_name;

        #[doc = #args_doc]
        #[derive(#core::__private::serde::Deserialize, #core::__private::schemars::JsonSchema)]
        #[serde(crate = #serde_path)]
        #[schemars(crate = #schemars_path)]
        #vis struct #args_name {
            #(#fields,)*
        }

        #[#core::async_trait]
        impl #core::TypedTool for #struct_name {
            type Args = #args_name;
            const NAME: &'static str = #name_lit;
            const DESCRIPTION: &'static str = #description_lit;

            async fn run(&self, args: #args_name, ctx: &#core::RunContext) -> #core::Result<#core::ToolOutput> {
                let _ = &ctx;
                let output = #fn_name(#(#call_args),*).await?;
                ::core::result::Result::Ok(::core::convert::Into::into(output))
            }
        }
    })
}

/// `#[derive(GraphState)]`: a state type for catena's state graphs. Generates `<Name>Update`, the
/// partial update nodes return (every field an `Option`, a setter per field), and the
/// `GraphState` impl that applies one through each field's reducer: overwrite by default,
/// `#[state(append)]` extends a collection, `#[state(reducer = path)]` calls
/// `path(&mut field, value)`. Documented, with an example, at `catena_agents::graph`.
#[proc_macro_derive(GraphState, attributes(state))]
pub fn derive_graph_state(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as syn::DeriveInput);
    expand_graph_state(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// How one field of a graph state takes an update.
enum Reducer {
    Overwrite,
    Append,
    Custom(syn::Path),
}

fn field_reducer(field: &syn::Field) -> syn::Result<Reducer> {
    let mut reducer = Reducer::Overwrite;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("state")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("append") {
                reducer = Reducer::Append;
                Ok(())
            } else if meta.path.is_ident("reducer") {
                reducer = Reducer::Custom(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("#[state(...)] takes `append` or `reducer = path`"))
            }
        })?;
    }
    Ok(reducer)
}

fn expand_graph_state(input: &syn::DeriveInput) -> syn::Result<TokenStream2> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "GraphState cannot be derived for a generic struct",
        ));
    }
    let syn::Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "GraphState is derived for structs with named fields",
        ));
    };
    let syn::Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "GraphState is derived for structs with named fields",
        ));
    };
    let graph = graph_path();
    let serde_path = format!("{}::__private::serde", graph.to_string().replace(' ', ""));
    let name = &input.ident;
    let vis = &input.vis;
    let update = format_ident!("{}Update", name);
    let mut update_fields = Vec::new();
    let mut setters = Vec::new();
    let mut applies = Vec::new();
    for field in &fields.named {
        let Some(ident) = &field.ident else { continue };
        let ty = &field.ty;
        let field_vis = &field.vis;
        let doc = format!("The new `{ident}`, when this update sets it.");
        update_fields.push(quote! {
            #[doc = #doc]
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #field_vis #ident: ::core::option::Option<#ty>
        });
        let setter_doc = format!("Sets `{ident}` (through its reducer when applied).");
        setters.push(quote! {
            #[doc = #setter_doc]
            #[must_use]
            #field_vis fn #ident(mut self, value: impl ::core::convert::Into<#ty>) -> Self {
                self.#ident = ::core::option::Option::Some(value.into());
                self
            }
        });
        let apply = match field_reducer(field)? {
            Reducer::Overwrite => quote!(self.#ident = value;),
            Reducer::Append => quote!(::core::iter::Extend::extend(&mut self.#ident, value);),
            Reducer::Custom(path) => quote!(#path(&mut self.#ident, value);),
        };
        applies.push(quote! {
            if let ::core::option::Option::Some(value) = update.#ident { #apply }
        });
    }
    let update_doc = format!("A partial update of [`{name}`]: what a graph node returns.");
    Ok(quote! {
        #[doc = #update_doc]
        #[derive(Clone, Debug, Default, PartialEq, #graph::__private::serde::Serialize, #graph::__private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        #vis struct #update {
            #(#update_fields,)*
        }

        impl #update {
            #(#setters)*
        }

        impl #graph::GraphState for #name {
            type Update = #update;

            fn apply(&mut self, update: #update) {
                #(#applies)*
            }
        }
    })
}

/// The path the user's crate reaches `catena_agents::graph` by.
fn graph_path() -> TokenStream2 {
    use proc_macro_crate::{FoundCrate, crate_name};
    if let Ok(found) = crate_name("catena") {
        let name = match found {
            FoundCrate::Itself => format_ident!("catena"),
            FoundCrate::Name(n) => format_ident!("{}", n),
        };
        return quote!(::#name::agents::graph);
    }
    match crate_name("catena-agents") {
        Ok(FoundCrate::Name(n)) => {
            let name = format_ident!("{}", n);
            quote!(::#name::graph)
        }
        _ => quote!(::catena_agents::graph),
    }
}
