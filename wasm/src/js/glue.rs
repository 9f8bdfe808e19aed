//! The JS half of the hot conversions (`glue.js`, a wasm-bindgen snippet).
//!
//! Every JS↔wasm string costs a text encoding or decoding, and in Node each is worth several
//! hundred nanoseconds however short the string: more than the hashing of a v2 signature. So
//! the hot calls move their strings as one string and the UTF-16 lengths of its parts, and the
//! JS side reads or builds the objects with plain property accesses.

use js_sys::Object;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/js/glue.js")]
extern "C" {
    #[wasm_bindgen(js_name = wechatpayHeaders)]
    fn wechatpay_headers_js(headers: &JsValue, lens: &mut [i32]) -> Option<String>;

    #[wasm_bindgen(js_name = headerPairs)]
    fn header_pairs_js(headers: &JsValue) -> Option<String>;

    #[wasm_bindgen(js_name = flatParams)]
    fn flat_params_js(params: &JsValue) -> Option<String>;

    #[wasm_bindgen(js_name = notificationObject)]
    fn notification_object_js(all: &str, lens: &[u32]) -> Object;

    #[wasm_bindgen(js_name = signedObject)]
    fn signed_object_js(all: &str, lens: &[u32]) -> Object;

    #[wasm_bindgen(js_name = authorizationObject)]
    fn authorization_object_js(all: &str, lens: &[u32]) -> Object;

    #[wasm_bindgen(js_name = paymentObject)]
    fn payment_object_js(all: &str, lens: &[u32]) -> Object;

    #[wasm_bindgen(js_name = mapObject)]
    fn map_object_js(all: &str, lens: &[u32]) -> Object;
}

/// The UTF-16 length of `s` (what JS's `length` counts).
fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().map(char::len_utf16).sum()
    }
}

/// Splits `all` into parts of the given UTF-16 lengths; `None` if they do not add up or fall
/// inside a character.
fn split_utf16(all: &str, lens: impl IntoIterator<Item = usize>) -> Option<Vec<&str>> {
    let mut rest = all;
    let mut parts = Vec::new();
    for len in lens {
        let mut units = 0;
        let mut end = 0;
        if rest.is_char_boundary(len) && rest.as_bytes()[..len].is_ascii() {
            end = len;
        } else {
            for c in rest.chars() {
                if units >= len {
                    break;
                }
                units += c.len_utf16();
                end += c.len_utf8();
            }
            if units != len {
                return None;
            }
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    rest.is_empty().then_some(parts)
}

/// `parts` concatenated, and their UTF-16 lengths.
fn join(parts: &[&str]) -> (String, Vec<u32>) {
    let mut all = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    let mut lens = Vec::with_capacity(parts.len());
    for p in parts {
        all.push_str(p);
        // A part longer than 4 GiB cannot come out of wasm32 memory.
        lens.push(u32::try_from(utf16_len(p)).unwrap_or(u32::MAX));
    }
    (all, lens)
}

/// The five `Wechatpay-*` values (the signature type optional) of a plain headers object, or
/// `None` when the general path must decide.
pub(crate) fn wechatpay_headers(headers: &JsValue) -> Option<([String; 4], Option<String>)> {
    let mut lens = [0i32; 5];
    let all = wechatpay_headers_js(headers, &mut lens)?;
    let lens_of = lens.iter().filter_map(|&l| usize::try_from(l).ok());
    let parts = split_utf16(&all, lens_of)?;
    let mut it = parts.into_iter().map(str::to_owned);
    let four = [it.next()?, it.next()?, it.next()?, it.next()?];
    Some((four, it.next()))
}

/// `L;k1v1k2v2…` (`L`: the UTF-16 lengths) as `(key, value)` pairs.
fn pairs_of(text: &str) -> Option<Vec<(String, String)>> {
    let (lens, all) = text.split_once(';')?;
    let lens = if lens.is_empty() {
        Vec::new()
    } else {
        lens.split(',')
            .map(str::parse)
            .collect::<Result<Vec<usize>, _>>()
            .ok()?
    };
    let parts = split_utf16(all, lens)?;
    let pairs = parts.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    Some(
        pairs
            .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
            .collect(),
    )
}

/// Every header as a `(name, value)` pair, or `None` for a value that is not headers (see
/// `headerPairs` in `glue.js`).
pub(crate) fn header_pairs(headers: &JsValue) -> Option<Vec<(String, String)>> {
    pairs_of(&header_pairs_js(headers)?)
}

/// v2 parameters as `(key, value)` pairs (values as text, empty values left out), or `None`
/// for parameters of the wrong shape (see `flatParams` in `glue.js`).
pub(crate) fn flat_params(params: &JsValue) -> Option<Vec<(String, String)>> {
    pairs_of(&flat_params_js(params)?)
}

/// The object of a verified notification (see `notificationObject` in `glue.js`).
pub(crate) fn notification_object(parts: &[&str; 11]) -> Object {
    let (all, lens) = join(parts);
    notification_object_js(&all, &lens)
}

/// `{ stringToSign, sign }`.
pub(crate) fn signed_object(string_to_sign: &str, sign: &str) -> Object {
    let (all, lens) = join(&[string_to_sign, sign]);
    signed_object_js(&all, &lens)
}

/// `{ message, signature, header }`.
pub(crate) fn authorization_object(message: &str, signature: &str, header: &str) -> Object {
    let (all, lens) = join(&[message, signature, header]);
    authorization_object_js(&all, &lens)
}

/// `{ appId, timeStamp, nonceStr, package, signType, paySign }`.
pub(crate) fn payment_object(parts: &[&str; 6]) -> Object {
    let (all, lens) = join(parts);
    payment_object_js(&all, &lens)
}

/// An object of strings from `(key, value)` pairs.
pub(crate) fn map_object<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Object {
    let flat: Vec<&str> = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
    let (all, lens) = join(&flat);
    map_object_js(&all, &lens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_round_trip() {
        let parts = ["a", "", "支付成功", "😀x", "tail"];
        let (all, lens) = join(&parts);
        assert_eq!(lens, [1, 0, 4, 3, 4]);
        let back = split_utf16(&all, lens.iter().map(|&l| l as usize)).expect("splits");
        assert_eq!(back, parts);
    }

    #[test]
    fn pairs_parse_their_lengths() {
        assert_eq!(
            pairs_of("1,3,0,0;a支付x"),
            Some(vec![
                ("a".to_owned(), "支付x".to_owned()),
                (String::new(), String::new())
            ])
        );
        assert_eq!(pairs_of(";"), Some(vec![]));
        assert_eq!(pairs_of("1;a"), None);
        assert_eq!(pairs_of("1,1;abc"), None);
        assert_eq!(pairs_of("x;a"), None);
    }

    #[test]
    fn split_refuses_lengths_that_do_not_fit() {
        // Too long, too short, and inside a surrogate pair.
        assert!(split_utf16("abc", [4]).is_none());
        assert!(split_utf16("abc", [2]).is_none());
        assert!(split_utf16("😀", [1, 1]).is_none());
    }
}
