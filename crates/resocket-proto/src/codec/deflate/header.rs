//! The `Sec-WebSocket-Extensions` grammar (RFC 6455, section 9.1): a comma-separated list of
//! extensions, each a token followed by `; name` or `; name=value` parameters, where a value is
//! a token or a quoted string.
//!
//! Elements are split before they are parsed, so one malformed offer does not hide the others
//! from a server that skips it.

use std::borrow::Cow;

/// One extension of the list, with its parameters in order (duplicates kept: what they mean is
/// for the extension to say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Element<'a> {
    pub(super) name: &'a str,
    pub(super) params: Vec<Param<'a>>,
}

/// `name` or `name=value`; a quoted value is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Param<'a> {
    pub(super) name: &'a str,
    pub(super) value: Option<Cow<'a, str>>,
}

/// A list element that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

/// The elements of one header value, each parsed on its own. Empty elements (`a, , b`) are
/// skipped, as HTTP lists allow them.
pub(super) fn elements(value: &str) -> impl Iterator<Item = Result<Element<'_>, Malformed>> {
    split_unquoted(value, b',')
        .map(str::trim)
        .filter(|element| !element.is_empty())
        .map(element)
}

fn element(text: &str) -> Result<Element<'_>, Malformed> {
    let mut parts = split_unquoted(text, b';').map(str::trim);
    let name = parts
        .next()
        .filter(|name| is_token(name))
        .ok_or(Malformed)?;
    let params = parts.map(param).collect::<Result<_, _>>()?;
    Ok(Element { name, params })
}

fn param(text: &str) -> Result<Param<'_>, Malformed> {
    let (name, value) = match text.split_once('=') {
        None => (text, None),
        Some((name, value)) => (name.trim_end(), Some(value.trim_start())),
    };
    if !is_token(name) {
        return Err(Malformed);
    }
    let value = match value {
        None => None,
        Some(value) if is_token(value) => Some(Cow::Borrowed(value)),
        Some(value) => Some(Cow::Owned(unquote(value)?)),
    };
    Ok(Param { name, value })
}

/// The content of a `"quoted-string"`, with `\x` escapes resolved.
fn unquote(text: &str) -> Result<String, Malformed> {
    let inner = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or(Malformed)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(Malformed)?),
            '"' => return Err(Malformed),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits at `sep` where it is not inside a quoted string. An unterminated quote runs to the
/// end, and the element it is in fails to parse later.
fn split_unquoted(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let bytes = current.as_bytes();
        let mut quoted = false;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b if b == sep && !quoted => {
                    rest = Some(&current[i + 1..]);
                    return Some(&current[..i]);
                }
                _ => {}
            }
            i += 1;
        }
        rest = None;
        Some(current)
    })
}

/// RFC 7230 `token`: one or more `tchar`.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Vec<Result<Element<'_>, Malformed>> {
        elements(value).collect()
    }

    fn el<'a>(name: &'a str, params: &[(&'a str, Option<&'a str>)]) -> Element<'a> {
        Element {
            name,
            params: params
                .iter()
                .map(|&(name, value)| Param {
                    name,
                    value: value.map(Cow::Borrowed),
                })
                .collect(),
        }
    }

    #[test]
    fn parses_a_list_of_extensions_with_parameters() {
        assert_eq!(
            parse("permessage-deflate; client_max_window_bits, x-foo;a=1 ;b"),
            vec![
                Ok(el(
                    "permessage-deflate",
                    &[("client_max_window_bits", None)]
                )),
                Ok(el("x-foo", &[("a", Some("1")), ("b", None)])),
            ]
        );
    }

    #[test]
    fn quoted_values_are_unescaped_and_may_hold_separators() {
        let parsed = parse(r#"e; a="1\0"; b="x,y;z", f"#);
        assert_eq!(
            parsed,
            vec![
                Ok(el("e", &[("a", Some("10")), ("b", Some("x,y;z"))])),
                Ok(el("f", &[])),
            ]
        );
    }

    #[test]
    fn a_malformed_element_does_not_hide_the_next() {
        let parsed = parse("bad name, e; =1, e; a=\"open, f ;a= 2");
        assert_eq!(parsed[0], Err(Malformed));
        assert_eq!(parsed[1], Err(Malformed));
        // The unterminated quote swallows the rest of the header.
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[2], Err(Malformed));
        assert_eq!(parse("e;a=,f"), vec![Err(Malformed), Ok(el("f", &[]))]);
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        assert_eq!(parse(" , e ,, "), vec![Ok(el("e", &[]))]);
        assert!(parse("").is_empty());
    }
}
