//! The server settings under which PostgreSQL reads SQL text as the gateway does.
//!
//! The gateway tokenizes and parses every query itself; that reading matches the
//! server's only while `standard_conforming_strings` is on (a backslash inside `'...'` is
//! an ordinary character) and the client encoding has no multi-byte characters whose
//! trailing byte can be a quote or a backslash (UTF8, or SQL_ASCII: no conversion, and
//! the gateway forwards only valid UTF-8). They are checked at login and watched in
//! every ParameterStatus for the rest of the session.

/// Why `value` of setting `name` would make the server read SQL differently from the
/// gateway; `None` when it is fine (or the setting does not matter).
pub fn misreading(name: &str, value: &str) -> Option<String> {
    let fine = match name {
        "standard_conforming_strings" => value.eq_ignore_ascii_case("on"),
        "client_encoding" => {
            value.eq_ignore_ascii_case("UTF8") || value.eq_ignore_ascii_case("SQL_ASCII")
        }
        _ => true,
    };
    (!fine).then(|| {
        format!(
            "the server reads SQL with {name} = {value}, which the gateway cannot judge \
             (it needs standard_conforming_strings = on and a UTF8 client encoding)"
        )
    })
}

/// The name and value of a ParameterStatus (B) body.
pub fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut parts = body.split(|b| *b == 0);
    let name = std::str::from_utf8(parts.next()?).ok()?;
    let value = std::str::from_utf8(parts.next()?).ok()?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_settings_the_gateway_reads_by() {
        assert!(misreading("standard_conforming_strings", "on").is_none());
        assert!(misreading("standard_conforming_strings", "off").is_some());
        assert!(misreading("client_encoding", "UTF8").is_none());
        assert!(misreading("client_encoding", "SQL_ASCII").is_none());
        assert!(misreading("client_encoding", "SJIS").is_some());
        assert!(misreading("application_name", "anything").is_none());
        assert_eq!(
            parameter_status(b"client_encoding\0SJIS\0"),
            Some(("client_encoding", "SJIS"))
        );
        assert_eq!(parameter_status(b"broken"), None);
    }
}
