//! Names in presentation form (RFC 1035 §5.1) for logs and records.
//!
//! Owns: turning a query name (any byte a label may hold) into text that has no control byte,
//! space or quote, so no client can break, forge or paint a log line with its query name.
//! Does not own: parsing (`wire`) or matching names (`policy`); names are compared as bytes.

/// The presentation form (RFC 1035 §5.1) of an uncompressed wire name, lowercased and without
/// the trailing dot ("." for the root): a byte outside printable ASCII becomes `\DDD`, and `.`
/// inside a label, `\`, `"`, `(`, `)`, `;`, `@` and `$` are escaped with a backslash. Whatever
/// a client puts in a label, the text has no control byte, space or quote, so it cannot break
/// or forge a log line.
pub fn name_text(wire_name: &[u8]) -> String {
    let mut out = String::with_capacity(wire_name.len());
    let mut pos = 0;
    while let Some(&len) = wire_name.get(pos) {
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        let label = wire_name.get(pos + 1..pos + 1 + usize::from(len)).unwrap_or_default();
        if !out.is_empty() {
            out.push('.');
        }
        for &byte in label {
            push_escaped(&mut out, byte.to_ascii_lowercase(), true);
        }
        pos += 1 + usize::from(len);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// `name_text` for a name already joined with dots (a `LowerName`'s text, a CNAME target in the
/// cache), where a dot inside a label can no longer be told from a separator: every byte but
/// the dots is escaped as `name_text` does.
pub fn escape_name(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text {
        push_escaped(&mut out, byte, false);
    }
    out
}

fn push_escaped(out: &mut String, byte: u8, escape_dot: bool) {
    use std::fmt::Write as _;
    match byte {
        b'.' if !escape_dot => out.push('.'),
        b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
            out.push('\\');
            out.push(char::from(byte));
        }
        0x21..=0x7e => out.push(char::from(byte)),
        _ => {
            let _ = write!(out, "\\{byte:03}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_presentation_form_escape_every_odd_byte() {
        let mut wire = Vec::new();
        for label in [&b"Evil\n\x1b[2J\0x"[..], b"a.b", b"\",\"client\":\" x", b"tiktok", b"com"] {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        wire.push(0);
        let text = name_text(&wire);
        assert_eq!(text, r#"evil\010\027[2j\000x.a\.b.\",\"client\":\"\032x.tiktok.com"#);
        assert!(text.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{text}");
        assert_eq!(name_text(&[0]), ".");
        assert_eq!(escape_name(b"a\nb.tiktok.com"), r"a\010b.tiktok.com");
    }
}
