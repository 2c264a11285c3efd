//! The `#[span]` attribute of spanbus.
//!
//! Use it as `#[spanbus::span]`: this crate is re-exported by spanbus, and the code it generates
//! refers to spanbus's runtime through `::spanbus::__private`, so users need no other
//! dependency. The attribute's documentation lives on `spanbus::span`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, FnArg, Ident, ImplItem, Item, ItemImpl, LitStr, Pat, ReturnType,
    Signature, Token, Type, Visibility,
};

/// Wraps a function, a method, or every method of an `impl` block in a spanbus span
/// (llama-index's `@dispatcher.span` and `DispatcherSpanMixin`).
///
/// # Where it goes
///
/// - an `async fn`: the span wraps the future (entered at its first poll, so its parent is the
///   span of whoever awaits it);
/// - a sync `fn`: the span wraps the call;
/// - a method: named `Type::method`, by the type of `self` that calls it: in a trait's default
///   method or a blanket impl (`impl<T: Bound> Trait for T`), each implementor's spans carry
///   its own name, as llama-index names a span by the runtime class (read with
///   `std::any::type_name`, without its path or generic arguments; once per type and call site);
/// - an `impl` block (opt-in): every method of the block, named `Type::method`, including
///   associated fns without `self`; `const fn`s are left alone. A method inside the block can
///   carry its own `#[span(...)]` to refine the block's options (its `name`, `skip`, `tags`).
///
/// A sync fn returning `impl Stream<..>` has its returned stream spanned instead (see
/// `spanbus::SpanStreamExt`): the span is entered at the stream's first poll, is current while
/// it produces items, and ends when the stream ends (exit) or is dropped early (cancelled). The
/// code that builds the stream runs before the span. An `async fn` returning a stream, or a fn
/// returning a boxed stream, spans only the creation: wrap the stream with `.in_span(...)`.
///
/// A free fn's span is named by its path, `my_crate::module::function`. An associated fn without
/// `self` that carries the attribute itself cannot see its type: put the attribute on the
/// `impl` block or give it a `name`.
///
/// # Options
///
/// | option | effect |
/// |---|---|
/// | `dispatcher = "app.llm"` | the process-wide dispatcher to use; checked at compile time. Default: the dispatcher named after the module path, `my_crate::llm` → `my_crate.llm` (llama-index's `get_dispatcher(__name__)`) |
/// | `dispatcher = self.bus` (any expression) | a dispatcher held anywhere: a field, a `Registry::new()` one, a standalone one; the expression gives a `Dispatcher` or a reference to one and is evaluated at each call, before the body (with the fn's arguments in scope) |
/// | `name = "retrieve"` | the span's name instead of the fn's |
/// | `skip(a, b)` | arguments not to capture (a name that is not an argument is an error) |
/// | `skip_all` | capture no argument |
/// | `tags(key = value, "dotted.key" = value)` | tags of the span; values are expressions evaluated at each call, anything `Into<serde_json::Value>` |
/// | `ret` | record the return value (of a `Result` fn, the `Ok` value) on the exit record, `SpanExit::result`; the type must be `Serialize` |
/// | `err` | record the `Err` value on the drop record, `SpanDrop::error` (the drop's text stays the error's `Display`); a `Result` fn only, the error type must be `Serialize` |
///
/// # Arguments
///
/// Every argument bound to a plain name is captured with `serde_json::to_value` into the span's
/// `args`, a JSON object keyed by argument name; `self` never is, nor are destructuring
/// patterns. An argument whose type is not `Serialize` must be skipped: otherwise the compiler
/// says "argument `x` is not serializable" at that argument. Capturing costs a serialization per
/// call: skip large or hot arguments.
///
/// # Outcomes
///
/// A fn whose return type is a path ending in `Result` (`Result<T, E>`, `io::Result<T>`,
/// `anyhow::Result<T>`) drops its span with the error's `Display` text when it returns `Err`;
/// `E` must implement `Display`. Any other return exits the span. A panic drops the span with
/// the panic's text and keeps unwinding; a dropped future drops its span as cancelled. Return
/// values, errors and panics pass through unchanged.
///
/// With `ret` and `err` the end record also carries the value, serialized with
/// `serde_json::to_value` only when some handler listens (as for arguments); a value that
/// fails to serialize is recorded as a string saying why. A span handler receives it in
/// `prepare_to_exit_span` / `prepare_to_drop_span`, and the JSON Lines output writes it as
/// `result` / `error`. A fn returning a stream takes neither (its span ends with the stream);
/// neither goes on an `impl` block (put it on the methods).
///
/// ```ignore
/// #[derive(serde::Serialize)]
/// struct Answer {
///     text: String,
///     tokens: u32,
/// }
///
/// #[spanbus::span(dispatcher = "app.llm", ret)]
/// async fn complete(prompt: String) -> Answer {
///     Answer { text: format!("{prompt}..."), tokens: 3 }
/// }
/// ```
///
/// # Cost
///
/// The dispatcher is looked up once per call site (a `static OnceLock`); each call then builds
/// its span like `dispatcher.span(name)` does, plus the argument capture.
#[proc_macro_attribute]
pub fn span(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        // The item goes through unchanged (but for the methods' own #[span] attributes, which
        // only the block's expansion would have consumed), so the error is the only one reported.
        Err(err) => {
            let err = err.to_compile_error();
            let item = match syn::parse2::<ItemImpl>(item.clone()) {
                Ok(mut imp) => {
                    for it in &mut imp.items {
                        if let ImplItem::Fn(f) = it {
                            f.attrs.retain(|a| !is_span_attr(a));
                        }
                    }
                    quote!(#imp)
                }
                Err(_) => item,
            };
            quote!(#err #item).into()
        }
    }
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let options: Options = syn::parse2(attr)?;
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            return Err(syn::Error::new_spanned(
                item,
                "#[spanbus::span] goes on a function with a body, a method, or an `impl` block",
            ));
        }
    };
    // Another #[span] still on the item (attributes stacked): one call must make one span.
    let more = match &item {
        Item::Fn(f) => f.attrs.iter().find(|a| is_span_attr(a)),
        Item::Impl(imp) => imp.attrs.iter().find(|a| is_span_attr(a)),
        _ => None,
    };
    if let Some(again) = more {
        return Err(syn::Error::new_spanned(
            again,
            "#[spanbus::span] is on this item more than once: one call makes one span, so put \
             every option in one attribute",
        ));
    }
    match item {
        Item::Fn(f) => expand_fn(
            &options,
            &f.attrs,
            &f.vis,
            &f.sig,
            &f.block,
            None,
            f.sig.ident.span(),
        ),
        Item::Impl(imp) => expand_impl(options, imp),
        other => {
            let what = item_kind(&other);
            Err(syn::Error::new(
                item_keyword_span(&other),
                format!(
                    "#[spanbus::span] goes on a function, a method, or an `impl` block, not on {what}"
                ),
            ))
        }
    }
}

fn item_kind(item: &Item) -> &'static str {
    match item {
        Item::Struct(_) => "a struct",
        Item::Enum(_) => "an enum",
        Item::Union(_) => "a union",
        Item::Trait(_) => "a trait definition (put it on the trait's `impl` blocks)",
        Item::Const(_) => "a const",
        Item::Static(_) => "a static",
        Item::Mod(_) => "a module",
        Item::Type(_) => "a type alias",
        Item::Use(_) => "a `use` declaration",
        Item::ForeignMod(_) => "an `extern` block",
        Item::Macro(_) => "a macro invocation",
        _ => "this item",
    }
}

fn item_keyword_span(item: &Item) -> Span {
    match item {
        Item::Struct(s) => s.struct_token.span,
        Item::Enum(e) => e.enum_token.span,
        Item::Union(u) => u.union_token.span,
        Item::Trait(t) => t.trait_token.span,
        Item::Const(c) => c.const_token.span,
        Item::Static(s) => s.static_token.span,
        Item::Mod(m) => m.mod_token.span,
        Item::Type(t) => t.type_token.span,
        Item::Use(u) => u.use_token.span,
        other => other.span(),
    }
}

// ---- options ------------------------------------------------------------------------------

const EXPECTED: &str = "expected `dispatcher = \"...\"` (or an expression), `name = \"...\"`, `skip(arg, ...)`, \
                        `skip_all`, `tags(key = value, ...)`, `ret` or `err`";

/// Where a span goes: a process-wide dispatcher by name (checked at compile time), or an
/// expression evaluated at each call.
#[derive(Clone)]
enum DispatcherOption {
    Named(LitStr),
    Expr(Box<Expr>),
}

/// The options of one `#[span(...)]` attribute.
#[derive(Default, Clone)]
struct Options {
    dispatcher: Option<DispatcherOption>,
    name: Option<LitStr>,
    skip: Vec<Ident>,
    skip_all: bool,
    tags: Vec<(LitStr, Expr)>,
    /// The span of the `skip` keyword, to reject it on impl blocks.
    skip_kw: Option<Span>,
    /// `ret`: record the return value (the `Ok` value of a `Result`) on the exit.
    ret: Option<Span>,
    /// `err`: record the `Err` value on the drop.
    err: Option<Span>,
}

impl Options {
    /// `self`'s options, with `outer`'s filling what `self` leaves unset (a method's attribute
    /// inside a spanned impl block).
    fn over(mut self, outer: &Options) -> Options {
        if self.dispatcher.is_none() {
            self.dispatcher = outer.dispatcher.clone();
        }
        self.skip_all |= outer.skip_all;
        self.ret = self.ret.or(outer.ret);
        self.err = self.err.or(outer.err);
        let mut tags = outer.tags.clone();
        tags.extend(self.tags);
        self.tags = tags;
        self
    }
}

impl Parse for Options {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut options = Options::default();
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
            let key_name = key.to_string();
            if seen.contains(&key_name) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("option `{key_name}` is given twice"),
                ));
            }
            match key_name.as_str() {
                "dispatcher" => {
                    input.parse::<Token![=]>()?;
                    if input.peek(LitStr) {
                        let lit: LitStr = input.parse()?;
                        if let Err(why) = validate_dispatcher_name(&lit.value()) {
                            return Err(syn::Error::new(lit.span(), why));
                        }
                        options.dispatcher = Some(DispatcherOption::Named(lit));
                    } else {
                        let expr: Expr = input.parse().map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                "`dispatcher` takes a name, dispatcher = \"app.llm\", or an \
                                 expression giving a `spanbus::Dispatcher`, dispatcher = self.bus",
                            )
                        })?;
                        options.dispatcher = Some(DispatcherOption::Expr(Box::new(expr)));
                    }
                }
                "name" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse().map_err(|e| {
                        syn::Error::new(e.span(), "`name` takes a string: name = \"retrieve\"")
                    })?;
                    if lit.value().is_empty() {
                        return Err(syn::Error::new(lit.span(), "a span name cannot be empty"));
                    }
                    options.name = Some(lit);
                }
                "skip" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let args = Punctuated::<Ident, Token![,]>::parse_terminated_with(
                        &content,
                        syn::ext::IdentExt::parse_any,
                    )?;
                    options.skip = args.into_iter().collect();
                    options.skip_kw = Some(key.span());
                }
                "skip_all" => options.skip_all = true,
                "ret" => options.ret = Some(key.span()),
                "err" => options.err = Some(key.span()),
                "tags" => {
                    let content;
                    syn::parenthesized!(content in input);
                    while !content.is_empty() {
                        let tag_key: LitStr = if content.peek(LitStr) {
                            content.parse()?
                        } else {
                            let ident: Ident = content.call(syn::ext::IdentExt::parse_any)?;
                            LitStr::new(&ident.unraw().to_string(), ident.span())
                        };
                        content.parse::<Token![=]>()?;
                        let value: Expr = content.parse()?;
                        options.tags.push((tag_key, value));
                        if content.is_empty() {
                            break;
                        }
                        content.parse::<Token![,]>()?;
                    }
                }
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{key_name}` for #[spanbus::span]: {EXPECTED}"),
                    ));
                }
            }
            seen.push(key_name);
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(options)
    }
}

/// The rules of spanbus's `NameError`, checked at compile time with the same messages.
fn validate_dispatcher_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("invalid dispatcher name: the name is empty".to_owned());
    }
    if let Some(ch) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid dispatcher name {name:?}: character {ch:?} is not allowed \
             (names are dotted paths such as \"app.retriever\")"
        ));
    }
    if let Some(i) = name.split('.').position(str::is_empty) {
        return Err(format!(
            "invalid dispatcher name {name:?}: empty segment at position {} \
             (names are dotted paths such as \"app.retriever\")",
            i + 1
        ));
    }
    Ok(())
}

// ---- impl blocks --------------------------------------------------------------------------

fn expand_impl(options: Options, mut imp: ItemImpl) -> syn::Result<TokenStream2> {
    if let Some(name) = &options.name {
        return Err(syn::Error::new(
            name.span(),
            "`name` on an impl block would give every method the same name: put \
             #[span(name = \"...\")] on the method instead",
        ));
    }
    if let Some(kw) = options.skip_kw {
        return Err(syn::Error::new(
            kw,
            "`skip(...)` on an impl block: put #[span(skip(...))] on the method, or use `skip_all`",
        ));
    }
    for (kw, option) in [(options.ret, "ret"), (options.err, "err")] {
        if let Some(kw) = kw {
            return Err(syn::Error::new(
                kw,
                format!(
                    "`{option}` on an impl block: put #[span({option})] on the methods whose \
                     values to record"
                ),
            ));
        }
    }
    // `impl<T: Bound> Trait for T`: the block's type is whichever type calls, named at run time.
    let type_name = self_type_name(&imp.self_ty).filter(|name| {
        !imp.generics
            .type_params()
            .any(|param| param.ident.unraw() == name.as_str())
    });
    for item in &mut imp.items {
        let ImplItem::Fn(f) = item else { continue };
        if f.sig.constness.is_some() {
            continue; // a const fn cannot run a span
        }
        // A method's own #[span(...)] refines the block's options.
        let mut method_options = None;
        let mut kept = Vec::with_capacity(f.attrs.len());
        for attr in f.attrs.drain(..) {
            if is_span_attr(&attr) {
                if method_options.is_some() {
                    return Err(syn::Error::new_spanned(
                        &attr,
                        "#[span] is on this method more than once: one call makes one span, so \
                         put every option in one attribute",
                    ));
                }
                let parsed = match &attr.meta {
                    syn::Meta::Path(_) => Options::default(),
                    syn::Meta::List(list) => syn::parse2(list.tokens.clone())?,
                    syn::Meta::NameValue(nv) => {
                        return Err(syn::Error::new_spanned(
                            nv,
                            format!("write #[span(...)] with options in parentheses: {EXPECTED}"),
                        ));
                    }
                };
                method_options = Some(parsed);
            } else {
                kept.push(attr);
            }
        }
        f.attrs = kept;
        let opts = match method_options {
            Some(m) => m.over(&options),
            None => options.clone(),
        };
        let tokens = expand_fn(
            &opts,
            &f.attrs,
            &f.vis,
            &f.sig,
            &f.block,
            type_name.clone(),
            f.sig.ident.span(),
        )?;
        *item = ImplItem::Verbatim(tokens);
    }
    Ok(quote!(#imp))
}

fn is_span_attr(attr: &Attribute) -> bool {
    let segments: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segments == ["span"] || segments == ["spanbus", "span"]
}

/// `Foo` for `impl Foo`, `impl<T> Foo<T>`, `impl Trait for a::Foo<T>`.
fn self_type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.unraw().to_string()),
        Type::Reference(r) => self_type_name(&r.elem),
        Type::Paren(p) => self_type_name(&p.elem),
        Type::Group(g) => self_type_name(&g.elem),
        _ => None,
    }
}

// ---- functions ----------------------------------------------------------------------------

fn expand_fn(
    options: &Options,
    attrs: &[Attribute],
    vis: &Visibility,
    sig: &Signature,
    block: &Block,
    // The `impl` block's type, if known: spans are named `Type::method`. Otherwise a fn
    // with a receiver reads its type's name at run time, and any other fn uses its path.
    self_type: Option<String>,
    fn_span: Span,
) -> syn::Result<TokenStream2> {
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span,
            "#[spanbus::span] cannot go on a `const fn`: spans run code at run time",
        ));
    }
    let fn_name = sig.ident.unraw().to_string();
    let private = quote!(::spanbus::__private);

    // Which arguments exist, and which are captured.
    let mut has_receiver = false;
    let mut arg_idents: Vec<Ident> = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => has_receiver = true,
            FnArg::Typed(pt) => {
                if let Pat::Ident(pi) = &*pt.pat {
                    if pi.ident == "self" {
                        has_receiver = true;
                    } else {
                        arg_idents.push(pi.ident.clone());
                    }
                }
            }
        }
    }
    for skipped in &options.skip {
        if skipped == "self" {
            continue; // never captured anyway
        }
        if !arg_idents.iter().any(|a| a.unraw() == skipped.unraw()) {
            return Err(syn::Error::new(
                skipped.span(),
                format!("`skip({skipped})`: `{fn_name}` has no argument named `{skipped}`"),
            ));
        }
    }
    let captured: Vec<&Ident> = if options.skip_all {
        Vec::new()
    } else {
        arg_idents
            .iter()
            .filter(|a| !options.skip.iter().any(|s| s.unraw() == a.unraw()))
            .collect()
    };

    // The span's name.
    let name = match (&options.name, self_type) {
        (Some(lit), _) => quote!(#lit),
        (None, Some(ty)) => {
            let full = format!("{ty}::{fn_name}");
            quote!(#full)
        }
        // `Self` may be any implementor (a trait's default method, a blanket impl): named by
        // the type that calls, per call, not by the first one to call.
        (None, None) if has_receiver => quote! {{
            static __SPANBUS_NAMES: #private::MethodNames = #private::MethodNames::new();
            #private::method_name(&__SPANBUS_NAMES, ::std::any::type_name::<Self>(), #fn_name)
        }},
        (None, None) => {
            quote!(::std::concat!(::std::module_path!(), "::", #fn_name))
        }
    };

    // The dispatcher, looked up once per call site.
    // The dispatcher: looked up once per call site by name, or the expression's, each call.
    let dispatcher = match &options.dispatcher {
        Some(DispatcherOption::Named(lit)) => {
            quote! { #private::named_dispatcher(&__SPANBUS_DISPATCHER, #lit) }
        }
        Some(DispatcherOption::Expr(expr)) => {
            let at = expr.span();
            quote_spanned! {at=> #private::DispatcherRef::dispatcher_ref(&(#expr)) }
        }
        None => {
            quote! { #private::module_dispatcher(&__SPANBUS_DISPATCHER, ::std::module_path!()) }
        }
    };

    let tags = options.tags.iter().map(|(k, v)| quote!(.tag(#k, #v)));

    let args = if captured.is_empty() {
        quote!()
    } else {
        let inserts = captured.iter().map(|ident| {
            let key = ident.unraw().to_string();
            let marker = (*ident).clone();
            let capture = quote_spanned! {ident.span()=>
                #private::capture::<#marker, _>(&#ident)
            };
            quote! {
                __spanbus_args.insert(::std::string::String::from(#key), {
                    #[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
                    struct #marker {}
                    #capture
                });
            }
        });
        // Built only when the span is not idle: nobody listening costs no serialization.
        quote! {
            .args_with(|| {
                let mut __spanbus_args = #private::Map::new();
                #(#inserts)*
                #private::Value::Object(__spanbus_args)
            })
        }
    };

    let is_result = returns_result(&sig.output);
    let is_async = sig.asyncness.is_some();
    let is_stream = !is_async && returns_impl_stream(&sig.output);
    if let Some(kw) = options.err
        && !is_result
    {
        return Err(syn::Error::new(
            kw,
            format!(
                "`err` records the `Err` value of a fn returning `Result`, and `{fn_name}` \
                 does not return a `Result`"
            ),
        ));
    }
    if is_stream && let Some(kw) = options.ret.or(options.err) {
        return Err(syn::Error::new(
            kw,
            format!(
                "`{fn_name}` returns a stream, whose span ends when the stream does: there \
                 is no single value for `ret` or `err` to record"
            ),
        ));
    }
    // Errors about the wrapper (an error type without `Display`, a value without
    // `Serialize`) point at the return type.
    let ret_span = return_span(&sig.output, fn_span);
    // How the span ends: by the output alone, or recording a value (`ret`, `err`).
    let ending = match (is_result, options.ret.is_some(), options.err.is_some()) {
        (false, false, _) => "",
        // `err` without a `Result` was refused above.
        (false, true, _) => "_ret",
        (true, false, false) => "_result",
        (true, true, false) => "_ret_ok",
        (true, false, true) => "_err",
        (true, true, true) => "_ret_err",
    };
    let method = format!(
        "{}{ending}",
        if is_async { "instrument" } else { "in_scope" }
    );
    let method = Ident::new(&method, ret_span);
    let call = quote_spanned!(ret_span=> ::spanbus::__private::#method);

    // Pins the wrapped block's output type to the fn's, so `?` and `return` infer as they do
    // in the fn itself (the same trick as `tracing::instrument`).
    let fake_return = match &sig.output {
        ReturnType::Type(_, ty) if !mentions_impl(&quote!(#ty)) => quote! {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::let_unit_value,
                clippy::unreachable,
                clippy::empty_loop,
                clippy::needless_return
            )]
            if false {
                let __spanbus_fake_return: #ty = loop {};
                return __spanbus_fake_return;
            }
        },
        _ => quote!(),
    };

    let stmts = &block.stmts;
    let cell = match &options.dispatcher {
        Some(DispatcherOption::Expr(_)) => quote!(),
        _ => quote! {
            static __SPANBUS_DISPATCHER: ::std::sync::OnceLock<#private::Dispatcher> =
                ::std::sync::OnceLock::new();
        },
    };
    let build = quote! {
        #cell
        let __spanbus_span = #private::Dispatcher::span(#dispatcher, #name) #(#tags)* #args;
    };
    let body = if is_stream {
        // A fn returning `impl Stream`: the span covers the stream's whole life, not just its
        // creation (llama-index ends a generator's span when the generator is created).
        quote! {
            #build
            let __spanbus_stream = (move || {
                #(#stmts)*
            })();
            ::spanbus::__private::in_span_stream(__spanbus_stream, __spanbus_span)
        }
    } else if is_async {
        let call = quote_spanned! {ret_span=>
            #call(__spanbus_span, async move {
                #fake_return
                #(#stmts)*
            })
            .await
        };
        quote! {
            #build
            #call
        }
    } else {
        let call = quote_spanned! {ret_span=>
            #call(__spanbus_span, move || {
                #fake_return
                #(#stmts)*
            })
        };
        quote! {
            #build
            #call
        }
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}

/// Whether the return type is `impl Stream<..>` (any path ending in `Stream`, other bounds
/// allowed).
fn returns_impl_stream(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::ImplTrait(imp) = &**ty else {
        return false;
    };
    imp.bounds.iter().any(|b| match b {
        syn::TypeParamBound::Trait(t) => {
            t.path.segments.last().is_some_and(|s| s.ident == "Stream")
        }
        _ => false,
    })
}

/// Whether the return type is a path ending in `Result` (`Result<T, E>`, `io::Result<T>`).
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

fn return_span(output: &ReturnType, fallback: Span) -> Span {
    match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => fallback,
    }
}

fn mentions_impl(tokens: &TokenStream2) -> bool {
    tokens.clone().into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(&g.stream()),
        _ => false,
    })
}
