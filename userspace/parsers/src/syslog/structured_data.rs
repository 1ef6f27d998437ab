//! RFC 5424 STRUCTURED-DATA (section 6.3): `[id name="value" ...][id2 ...]`.
//!
//! The same bounds readers serve validation during parsing (over bytes, before the section
//! is known to be UTF-8) and the lazy iterators callers use afterwards, so both always agree
//! on where an element or a value ends.

use std::borrow::Cow;
use std::ops::Range;

use super::StructuredData;

/// Where one SD-ELEMENT's parts lie, as byte ranges of the section.
struct ElementBounds {
    id: Range<usize>,
    /// From the end of the id to just before `]`: zero or more ` name="value"`.
    params: Range<usize>,
    /// Just past the closing `]`.
    end: usize,
}

struct ParamBounds {
    name: Range<usize>,
    /// Between the quotes, escapes left in place.
    value: Range<usize>,
    /// Just past the closing `"`.
    end: usize,
}

/// SD-NAME: 1 or more PRINTUSASCII except `=`, space, `]` and `"`. RFC 5424 caps names at
/// 32 characters; longer ones are read anyway, since refusing them would lose the whole
/// section and the bound protects nothing here.
fn read_sd_name(bytes: &[u8], start: usize) -> Option<usize> {
    let name = bytes.get(start..)?;
    let len = name
        .iter()
        .take_while(|&&byte| matches!(byte, 33..=126) && !matches!(byte, b'=' | b']' | b'"'))
        .count();
    (len > 0).then_some(start + len)
}

fn read_param(bytes: &[u8], start: usize) -> Option<ParamBounds> {
    let name_end = read_sd_name(bytes, start)?;
    if bytes.get(name_end..name_end + 2) != Some(b"=\"") {
        return None;
    }
    let value_start = name_end + 2;
    let mut at = value_start;
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes.get(found) == Some(&b'"') {
            return Some(ParamBounds { name: start..name_end, value: value_start..found, end: found + 1 });
        }
        // A backslash escapes the byte after it, whatever it is: `\"` must not end the value.
        // RFC 5424 also asks for `]` to be escaped, but inside quotes an unescaped one is
        // unambiguous and common, so it is accepted.
        at = found + 2;
    }
}

fn read_element(bytes: &[u8], start: usize) -> Option<ElementBounds> {
    if bytes.get(start) != Some(&b'[') {
        return None;
    }
    let id_start = start + 1;
    let id_end = read_sd_name(bytes, id_start)?;
    let mut at = id_end;
    loop {
        match bytes.get(at)? {
            b']' => {
                return Some(ElementBounds { id: id_start..id_end, params: id_end..at, end: at + 1 });
            }
            b' ' => at = read_param(bytes, at + 1)?.end,
            _ => return None,
        }
    }
}

/// Length of the SD-ELEMENTs at the start of `bytes` (one or more), or `None` when they
/// break the grammar. What follows them is the caller's business.
pub(super) fn scan_structured_data(bytes: &[u8]) -> Option<usize> {
    let mut end = 0;
    loop {
        end = read_element(bytes, end)?.end;
        if bytes.get(end) != Some(&b'[') {
            return Some(end);
        }
    }
}

impl<'a> StructuredData<'a> {
    /// The SD-ELEMENTs in wire order.
    pub fn elements(&self) -> SdElements<'a> {
        SdElements { raw: self.raw, position: 0 }
    }

    /// The first value of `name` in the first element called `element_id`.
    pub fn param(&self, element_id: &str, name: &str) -> Option<SdParamValue<'a>> {
        self.elements()
            .filter(|element| element.id == element_id)
            .find_map(|element| element.params().find(|(param, _)| *param == name))
            .map(|(_, value)| value)
    }
}

/// Iterator over the SD-ELEMENTs of a [`StructuredData`].
#[derive(Clone, Debug)]
pub struct SdElements<'a> {
    raw: &'a str,
    position: usize,
}

impl<'a> Iterator for SdElements<'a> {
    type Item = SdElement<'a>;

    fn next(&mut self) -> Option<SdElement<'a>> {
        let bounds = read_element(self.raw.as_bytes(), self.position);
        let Some(bounds) = bounds else {
            self.position = self.raw.len();
            return None;
        };
        self.position = bounds.end;
        // Every range ends at an ASCII delimiter, hence on a char boundary.
        Some(SdElement { id: self.raw.get(bounds.id)?, params_raw: self.raw.get(bounds.params)? })
    }
}

/// One `[id name="value" ...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// SD-ID, e.g. `timeQuality` or `exampleSDID@32473`.
    pub id: &'a str,
    /// The ` name="value"` pairs as sent, escapes included.
    pub params_raw: &'a str,
}

impl<'a> SdElement<'a> {
    /// The SD-PARAMs in wire order, duplicates kept.
    pub fn params(&self) -> SdParams<'a> {
        SdParams { raw: self.params_raw, position: 0 }
    }
}

/// Iterator over the `(name, value)` pairs of an [`SdElement`].
#[derive(Clone, Debug)]
pub struct SdParams<'a> {
    raw: &'a str,
    position: usize,
}

impl<'a> Iterator for SdParams<'a> {
    type Item = (&'a str, SdParamValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.raw.as_bytes();
        let bounds = match bytes.get(self.position) {
            Some(b' ') => read_param(bytes, self.position + 1),
            _ => None,
        };
        let Some(bounds) = bounds else {
            self.position = self.raw.len();
            return None;
        };
        self.position = bounds.end;
        Some((self.raw.get(bounds.name)?, SdParamValue { raw: self.raw.get(bounds.value)? }))
    }
}

/// A PARAM-VALUE as sent; [`SdParamValue::unescaped`] resolves `\"`, `\\` and `\]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdParamValue<'a> {
    /// Between the quotes, escapes left in place; a sub-slice of the frame.
    pub raw: &'a str,
}

impl<'a> SdParamValue<'a> {
    /// The value with its escapes resolved. Borrows unless the value holds a backslash.
    /// A backslash before any other character stays, as RFC 5424 section 6.3.3 asks.
    pub fn unescaped(&self) -> Cow<'a, str> {
        let Some(first) = memchr::memchr(b'\\', self.raw.as_bytes()) else {
            return Cow::Borrowed(self.raw);
        };
        let mut text = String::with_capacity(self.raw.len());
        let mut rest = self.raw;
        let mut backslash = Some(first);
        while let Some(index) = backslash {
            // `index` points at an ASCII backslash, so both splits are on char boundaries.
            text.push_str(rest.get(..index).unwrap_or_default());
            let after = rest.get(index + 1..).unwrap_or_default();
            rest = match after.as_bytes().first() {
                Some(escaped @ (b'"' | b'\\' | b']')) => {
                    text.push(char::from(*escaped));
                    after.get(1..).unwrap_or_default()
                }
                _ => {
                    text.push('\\');
                    after
                }
            };
            backslash = memchr::memchr(b'\\', rest.as_bytes());
        }
        text.push_str(rest);
        Cow::Owned(text)
    }
}

impl core::fmt::Display for SdParamValue<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.unescaped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_stops_after_the_last_element() {
        let section = br#"[a x="1"][b@2 y="]" z="\"q\""] msg"#;
        assert_eq!(scan_structured_data(section), Some(30));
    }

    #[test]
    fn scan_rejects_broken_elements() {
        for broken in
            [&b"[]"[..], b"[a", b"[a x]", b"[a x=1]", b"[a x=\"1]", b"[a x=\"\\", b"[a=b]", b"[a  x=\"1\"]"]
        {
            assert_eq!(scan_structured_data(broken), None, "{:?}", String::from_utf8_lossy(broken));
        }
    }

    #[test]
    fn unescape_resolves_only_the_three_rfc_escapes() {
        let value = SdParamValue { raw: r#"a\"b\\c\]d\ne\"# };
        assert_eq!(value.unescaped(), r#"a"b\c]d\ne\"#);
        assert!(matches!(SdParamValue { raw: "plain" }.unescaped(), Cow::Borrowed("plain")));
    }

    #[test]
    fn iterators_stop_quietly_on_hand_built_garbage() {
        let data = StructuredData { raw: r#"[ok a="1"][bad"# };
        let ids: Vec<_> = data.elements().map(|element| element.id).collect();
        assert_eq!(ids, ["ok"]);
    }
}
