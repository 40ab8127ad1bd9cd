//! Personal data found by content (SPEC `mask.email`, `mask.card`): email addresses and
//! Luhn-valid card numbers inside any text value. Kept apart from [`detectors`]
//! (secrets), which also guard pushes: an email in a commit is not a leak, an email in a
//! result column an agent reads may be.
//!
//! Both are one linear pass with a cheap anchor (`@`, a digit) before anything is
//! checked, so a value without either costs a `memchr`-like scan.
//!
//! [`detectors`]: super::detectors

use std::ops::Range;

/// An email address (`local@domain.tld`).
pub const EMAIL: &str = "email";
/// 13 to 19 digits, optionally grouped by single spaces or dashes, that pass Luhn.
pub const CARD: &str = "card";

/// Spans of the emails and card numbers in `text`, in order, each with its detector.
pub fn find(text: &[u8]) -> Vec<(&'static str, Range<usize>)> {
    let mut out = Vec::new();
    if text.contains(&b'@') {
        emails(text, &mut out);
    }
    if text.iter().any(u8::is_ascii_digit) {
        cards(text, &mut out);
    }
    out.sort_by_key(|(_, span)| span.start);
    out
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

fn emails(text: &[u8], out: &mut Vec<(&'static str, Range<usize>)>) {
    let mut from = 0;
    while let Some(at) = text[from..]
        .iter()
        .position(|&b| b == b'@')
        .map(|i| i + from)
    {
        from = at + 1;
        let start = text[..at]
            .iter()
            .rposition(|&b| !is_local(b))
            .map_or(0, |i| i + 1);
        let mut end = at + 1 + text[at + 1..].iter().take_while(|&&b| is_domain(b)).count();
        // A trailing dot ends the sentence, not the domain.
        while end > at + 1 && text[end - 1] == b'.' {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        let tld = domain.rsplit(|&b| b == b'.').next().unwrap_or_default();
        let dotted = domain.contains(&b'.') && !domain.starts_with(b".");
        if start < at && dotted && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) {
            out.push((EMAIL, start..end));
            from = end;
        }
    }
}

fn cards(text: &[u8], out: &mut Vec<(&'static str, Range<usize>)>) {
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() || (i > 0 && text[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        // A run of digits with single separators between groups (no allocation: this
        // runs for every number in every value read for content).
        let start = i;
        let mut digits = [0u8; 20];
        let mut count = 0;
        let mut end = i;
        let mut j = i;
        while j < text.len() && count < digits.len() {
            let b = text[j];
            if b.is_ascii_digit() {
                digits[count] = b - b'0';
                count += 1;
                j += 1;
                end = j;
            } else if (b == b' ' || b == b'-')
                && j + 1 < text.len()
                && text[j + 1].is_ascii_digit()
                && text[j - 1].is_ascii_digit()
            {
                j += 1;
            } else {
                break;
            }
        }
        let bounded = end == text.len() || !text[end].is_ascii_alphanumeric();
        if (13..=19).contains(&count) && bounded && luhn(&digits[..count]) {
            out.push((CARD, start..end));
        }
        i = end.max(i + 1);
    }
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10) && digits.iter().any(|&d| d != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&'static str, &str)> {
        find(text.as_bytes())
            .into_iter()
            .map(|(d, s)| (d, &text[s]))
            .collect()
    }

    #[test]
    fn emails_inside_free_text() {
        assert_eq!(
            found("write to ada.lovelace+x@example.co.uk. or bob@ex-ample.org"),
            vec![
                (EMAIL, "ada.lovelace+x@example.co.uk"),
                (EMAIL, "bob@ex-ample.org")
            ]
        );
        // Not emails: no dot in the domain, no local part, a numeric tld.
        assert!(found("@handle and user@localhost and a@b.c1 and @x.com").is_empty());
    }

    #[test]
    fn card_numbers_pass_luhn_grouped_or_not() {
        assert_eq!(
            found("card 4111 1111 1111 1111, or 5500-0000-0000-0004; 4111111111111111"),
            vec![
                (CARD, "4111 1111 1111 1111"),
                (CARD, "5500-0000-0000-0004"),
                (CARD, "4111111111111111")
            ]
        );
    }

    #[test]
    fn numbers_that_are_not_cards_stay() {
        // Luhn fails; too short; inside a longer token; all zeros.
        assert!(found("4111 1111 1111 1112 and 411111111111 and x4111111111111111").is_empty());
        assert!(found("0000000000000000").is_empty());
        assert!(found("order 12345, total 99.50").is_empty());
    }
}
