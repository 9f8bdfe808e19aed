//! The flat XML of APIv2: `<xml><field><![CDATA[value]]></field>…</xml>`.
//! (WeChat Pay APIv2, "协议规则": data format XML, UTF-8, root element `xml`.)
//!
//! The parser is deliberately strict and small: one root, leaf children holding text or CDATA,
//! no attributes of meaning. A DTD or any entity other than the five predefined ones and
//! character references is refused, so there is no XXE and no entity expansion.

use crate::{Error, Result};
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use std::collections::BTreeMap;

/// Largest document accepted (WeChat's notifications are a few KB).
pub const MAX_XML_LEN: usize = 64 * 1024;

fn normalize_eol(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses the children of the root element into a map (the root's name is not checked, so the
/// `<root>` of a decrypted `req_info` parses too).
///
/// # Errors
/// [`Error::Malformed`] for anything that is not such a document: not XML, truncated, nested
/// elements, repeated fields, text outside fields, a DTD, an unknown entity, or over
/// [`MAX_XML_LEN`] bytes.
pub fn parse_xml(xml: &str) -> Result<BTreeMap<String, String>> {
    if xml.len() > MAX_XML_LEN {
        return Err(Error::Malformed("XML document too large"));
    }
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut map = BTreeMap::new();
    // depth 0: before root, 1: in root, 2: in a field; 3: root closed.
    let mut depth = 0u8;
    let mut field: Option<(String, String)> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|_| Error::Malformed("not well-formed XML"))?;
        match ev {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(Error::Malformed("DTDs are not accepted")),
            Event::Start(e) => match depth {
                0 => depth = 1,
                1 => {
                    let name = e.name().as_ref().to_owned();
                    field = Some((name, String::new()));
                    depth = 2;
                }
                _ => return Err(Error::Malformed("nested or extra elements")),
            },
            Event::Empty(e) => match depth {
                1 => {
                    let name = e.name().as_ref().to_owned();
                    if map.insert(name, String::new()).is_some() {
                        return Err(Error::Malformed("repeated field"));
                    }
                }
                0 => depth = 3,
                _ => return Err(Error::Malformed("nested or extra elements")),
            },
            Event::End(_) => match depth {
                2 => {
                    let (name, value) = field.take().ok_or(Error::Malformed("unbalanced"))?;
                    if map.insert(name, value).is_some() {
                        return Err(Error::Malformed("repeated field"));
                    }
                    depth = 1;
                }
                1 => depth = 3,
                _ => return Err(Error::Malformed("unbalanced end tag")),
            },
            Event::Text(t) => {
                let text = t.into_inner();
                match (&mut field, depth) {
                    (Some((_, v)), 2) => v.push_str(&normalize_eol(&text)),
                    _ if text.trim().is_empty() => {}
                    _ => return Err(Error::Malformed("text outside a field")),
                }
            }
            Event::CData(t) => match (&mut field, depth) {
                (Some((_, v)), 2) => v.push_str(&normalize_eol(&t.into_inner())),
                _ => return Err(Error::Malformed("CDATA outside a field")),
            },
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or(Error::Malformed("bad character reference"))?
                } else {
                    predefined(&r).ok_or(Error::Malformed("entities are not accepted"))?
                };
                match (&mut field, depth) {
                    (Some((_, v)), 2) => v.push(c),
                    _ => return Err(Error::Malformed("reference outside a field")),
                }
            }
            Event::Eof => break,
        }
    }
    if depth != 3 {
        return Err(Error::Malformed("truncated XML"));
    }
    Ok(map)
}

/// Whether XML 1.0 can carry `c` at all (§2.2 `Char`): tab, LF, CR, and everything from
/// U+0020 except the non-characters U+FFFE and U+FFFF (surrogates cannot occur in a `str`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Appends `value` as CDATA that every XML parser reads back unchanged.
///
/// Two things would otherwise change on the way: `]]>` ends a CDATA section, so it is split
/// across two sections; and a parser turns every CR and CRLF into LF before it even sees CDATA
/// (XML 1.0 §2.11), which would change a signed value, so each CR leaves the section and is
/// written as the character reference `&#13;`, which §2.11 does not touch.
fn push_cdata(out: &mut String, value: &str) {
    out.push_str("<![CDATA[");
    let mut rest = value;
    while let Some(i) = rest.find([']', '\r']) {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        if let Some(after) = tail.strip_prefix("]]>") {
            out.push_str("]]]]><![CDATA[>");
            rest = after;
        } else if let Some(after) = tail.strip_prefix('\r') {
            out.push_str("]]>&#13;<![CDATA[");
            rest = after;
        } else {
            out.push(']');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Serializes a map as `<xml>` with every value in CDATA (field order = key order). Every value
/// parses back byte for byte, CR and `]]>` included (see [`parse_xml`]).
///
/// # Errors
/// [`Error::Malformed`] if a key is not a valid element name (`[A-Za-z_][A-Za-z0-9_]*`), or a
/// value holds a character XML 1.0 cannot carry (C0 controls other than tab, LF and CR; U+FFFE;
/// U+FFFF) — WeChat's parser would refuse the document.
pub fn to_xml(params: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::from("<xml>");
    for (k, v) in params {
        let valid = k
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(Error::Malformed("field name is not a valid XML name"));
        }
        if !v.chars().all(is_xml_char) {
            return Err(Error::Malformed(
                "field value holds a character XML cannot carry",
            ));
        }
        out.push('<');
        out.push_str(k);
        out.push('>');
        push_cdata(&mut out, v);
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</xml>");
    Ok(out)
}

/// The reply a merchant sends to an APIv2 notification:
/// `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
/// or `FAIL` with a message (characters XML cannot carry become U+FFFD).
#[must_use]
pub fn reply_xml(success: bool, message: &str) -> String {
    let mut out = String::from("<xml><return_code>");
    push_cdata(&mut out, if success { "SUCCESS" } else { "FAIL" });
    out.push_str("</return_code><return_msg>");
    let message: String = message
        .chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    push_cdata(&mut out, &message);
    out.push_str("</return_msg></xml>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cdata_text_and_references() {
        let m = parse_xml("<?xml version=\"1.0\"?>\n<xml>\n <a><![CDATA[x<y]]></a>\n <b>1&amp;2&#x41;</b><c/></xml>\n")
            .expect("parses");
        assert_eq!(m["a"], "x<y");
        assert_eq!(m["b"], "1&2A");
        assert_eq!(m["c"], "");
    }

    #[test]
    fn refuses_dtd_entities_nesting_truncation_and_repeats() {
        for bad in [
            "<!DOCTYPE xml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><a>&e;</a></xml>",
            "<xml><a>&e;</a></xml>",
            "<xml><a><b>1</b></a></xml>",
            "<xml><a>1</a>",
            "<xml><a>1</a><a>2</a></xml>",
            "<xml>text<a>1</a></xml>",
            "<xml><a>1</a></xml><xml/>",
            "<xml><a>1</b></xml>",
            "not xml",
            "",
        ] {
            assert_eq!(parse_xml(bad).expect_err(bad).code(), "malformed", "{bad}");
        }
    }

    #[test]
    fn round_trip_with_cdata_terminator() {
        let mut m = BTreeMap::new();
        m.insert("body".to_owned(), "a]]>b & <c>".to_owned());
        m.insert("total_fee".to_owned(), "1".to_owned());
        assert_eq!(parse_xml(&to_xml(&m).expect("xml")).expect("parse"), m);
        assert_eq!(
            parse_xml(&reply_xml(true, "OK")).expect("reply")["return_code"],
            "SUCCESS"
        );
    }

    #[test]
    fn carriage_returns_survive_and_controls_are_refused() {
        let mut m = BTreeMap::new();
        m.insert("a".to_owned(), "x\ry\r\nz]\r]]>\t".to_owned());
        let xml = to_xml(&m).expect("xml");
        assert!(!xml.contains('\r'), "{xml:?}");
        assert_eq!(parse_xml(&xml).expect("parse"), m);
        // What a raw CR in CDATA would have become (XML 1.0 §2.11).
        assert_eq!(
            parse_xml("<xml><a><![CDATA[x\ry\r\nz]]></a></xml>").expect("parse")["a"],
            "x\ny\nz"
        );
        for bad in ["\u{0}", "a\u{1}", "\u{b}", "\u{1f}", "\u{FFFE}", "\u{FFFF}"] {
            m.insert("a".to_owned(), bad.to_owned());
            assert_eq!(to_xml(&m).expect_err(bad).code(), "malformed");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") { let _ = parse_xml(&s); }

        /// Any printable value, CR, LF, tab and `]]>` included, comes back unchanged.
        #[test]
        fn round_trips(m in proptest::collection::btree_map("[a-z_][a-z0-9_]{0,10}", "(\\PC|[\r\n\t]|]]>){0,30}", 0..8)) {
            prop_assert_eq!(parse_xml(&to_xml(&m).expect("xml")).expect("parse"), m);
        }
    }
}
