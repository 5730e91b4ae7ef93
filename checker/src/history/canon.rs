//! Canonical JSON text, so that two values are the same JSON value exactly when their interned ids
//! are equal (history-format.md: "the order of an object's keys and the spelling of a number (`1`,
//! `1.0`, `1e0`) do not count").
//!
//! The canonical form: no whitespace outside strings; object keys sorted by their bytes (a key given
//! twice keeps its last value, as serde_json does); strings escaped as serde_json writes them; numbers
//! as exact decimals, with no sign on zero, no leading or trailing zeros in the digits, written as an
//! integer when the value is an integer of at most [`INTEGER_DIGITS_MAX`] digits and as `digits e exp`
//! otherwise (`1.5` and `15e-1` are both `15e-1`). Numbers are compared exactly, not as `f64`.
//!
//! Most values a harness writes are canonical already (serde_json's own output of arrays and strings
//! is), so [`is_canonical`] first scans the text without allocating, and only a value that fails it is
//! rebuilt. The input is always text that serde_json has already validated as JSON.

/// Integers with at most this many digits are written in full; longer ones in exponent form.
const INTEGER_DIGITS_MAX: usize = 64;

/// The deepest nesting of arrays and objects a value may have: what serde_json's own recursion limit
/// lets `serde_json::Value` read (127 levels; 128 is refused), so that every part of the checker (and a report, which reads values as `serde_json::Value`) can read
/// every value the parser accepted. Deeper is an error naming the line, never a stack overflow (the
/// canonical form is built recursively).
pub(crate) const VALUE_DEPTH_MAX: usize = 127;

/// Where reading an integer (an index, a counter) stops adding exponent digits: no text holds 10^15
/// digits, so a larger exponent cannot be brought back to an integer of 128 bits by zeros, and the
/// reading's verdict (too large, not an integer) is the same as the exact one. Values are
/// canonicalised with their exponents exact, whatever their size.
pub(crate) const EXPONENT_MAX: i64 = 1_000_000_000_000_000;

/// Whether `text` is already in canonical form. Conservative: `false` may be returned for a text that
/// canonicalises to itself (any string with an escape), never `true` for one that does not.
pub(crate) fn is_canonical(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    fast_value(b, &mut i, 0) && i == b.len()
}

/// `depth`: the arrays and objects around this value. A value nested too deep is not canonical here:
/// [`canonicalize`] then says why.
fn fast_value(b: &[u8], i: &mut usize, depth: usize) -> bool {
    match b.get(*i) {
        Some(b'{' | b'[') if depth >= VALUE_DEPTH_MAX => false,
        Some(b'{') => {
            *i += 1;
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return true;
            }
            let mut prev: Option<&[u8]> = None;
            loop {
                if b.get(*i) != Some(&b'"') {
                    return false;
                }
                let Some(key) = fast_string(b, i) else {
                    return false;
                };
                if prev.is_some_and(|p| p >= key) {
                    return false;
                }
                prev = Some(key);
                if b.get(*i) != Some(&b':') {
                    return false;
                }
                *i += 1;
                if !fast_value(b, i, depth + 1) {
                    return false;
                }
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return true;
                    }
                    _ => return false,
                }
            }
        }
        Some(b'[') => {
            *i += 1;
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return true;
            }
            loop {
                if !fast_value(b, i, depth + 1) {
                    return false;
                }
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return true;
                    }
                    _ => return false,
                }
            }
        }
        Some(b'"') => fast_string(b, i).is_some(),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        Some(b'-' | b'0'..=b'9') => {
            let start = *i;
            while matches!(
                b.get(*i),
                Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            ) {
                *i += 1;
            }
            canonical_integer(&b[start..*i])
        }
        _ => false,
    }
}

/// A string with no escapes: its contents (between the quotes), and `i` moved past it.
fn fast_string<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
    let start = *i + 1;
    let mut j = start;
    loop {
        match b.get(j)? {
            b'"' => {
                *i = j + 1;
                return Some(&b[start..j]);
            }
            b'\\' => return None,
            _ => j += 1,
        }
    }
}

fn literal(b: &[u8], i: &mut usize, word: &[u8]) -> bool {
    if b[*i..].starts_with(word) {
        *i += word.len();
        true
    } else {
        false
    }
}

/// `-?(0|[1-9][0-9]*)` with at most `INTEGER_DIGITS_MAX` digits, and not `-0`.
fn canonical_integer(t: &[u8]) -> bool {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    if digits.is_empty() || digits.len() > INTEGER_DIGITS_MAX {
        return false;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if digits[0] == b'0' {
        return digits.len() == 1 && t.len() == 1;
    }
    true
}

/// Appends the canonical text of `text` (valid JSON) to `out`.
pub(crate) fn canonicalize(text: &str, out: &mut String) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    slow_value(text, b, &mut i, out, 0)?;
    skip_ws(b, &mut i);
    if i != b.len() {
        return Err(format!("trailing text at byte {i} of a value"));
    }
    Ok(())
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while matches!(b.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        *i += 1;
    }
}

fn slow_value(
    text: &str,
    b: &[u8],
    i: &mut usize,
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    skip_ws(b, i);
    match b.get(*i) {
        Some(b'{' | b'[') if depth >= VALUE_DEPTH_MAX => Err(format!(
            "a value nested deeper than {VALUE_DEPTH_MAX} levels of arrays and objects (the most this checker reads)"
        )),
        Some(b'{') => {
            *i += 1;
            let mut entries: Vec<(String, String)> = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
            } else {
                loop {
                    skip_ws(b, i);
                    let key = slow_string(text, b, i)?;
                    skip_ws(b, i);
                    if b.get(*i) != Some(&b':') {
                        return Err("expected ':' in an object".to_owned());
                    }
                    *i += 1;
                    let mut value = String::new();
                    slow_value(text, b, i, &mut value, depth + 1)?;
                    entries.push((key, value));
                    skip_ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            break;
                        }
                        _ => return Err("expected ',' or '}' in an object".to_owned()),
                    }
                }
            }
            // Stable: for a key given twice, the later entry comes later and wins.
            entries.sort_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
            let mut kept: Vec<(String, String)> = Vec::with_capacity(entries.len());
            for e in entries {
                match kept.last_mut() {
                    Some(last) if last.0 == e.0 => *last = e,
                    _ => kept.push(e),
                }
            }
            out.push('{');
            for (n, (k, v)) in kept.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                push_string(k, out);
                out.push(':');
                out.push_str(v);
            }
            out.push('}');
            Ok(())
        }
        Some(b'[') => {
            *i += 1;
            out.push('[');
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
            } else {
                let mut first = true;
                loop {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    slow_value(text, b, i, out, depth + 1)?;
                    skip_ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b']') => {
                            *i += 1;
                            break;
                        }
                        _ => return Err("expected ',' or ']' in an array".to_owned()),
                    }
                }
            }
            out.push(']');
            Ok(())
        }
        Some(b'"') => {
            let s = slow_string(text, b, i)?;
            push_string(&s, out);
            Ok(())
        }
        Some(b't') if literal(b, i, b"true") => {
            out.push_str("true");
            Ok(())
        }
        Some(b'f') if literal(b, i, b"false") => {
            out.push_str("false");
            Ok(())
        }
        Some(b'n') if literal(b, i, b"null") => {
            out.push_str("null");
            Ok(())
        }
        Some(b'-' | b'0'..=b'9') => {
            let start = *i;
            while matches!(
                b.get(*i),
                Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            ) {
                *i += 1;
            }
            number(&text[start..*i], out)
        }
        _ => Err(format!("unexpected byte at {i} of a value")),
    }
}

/// Decodes the string token at `i` (escapes included) and moves `i` past it.
fn slow_string(text: &str, b: &[u8], i: &mut usize) -> Result<String, String> {
    if b.get(*i) != Some(&b'"') {
        return Err("expected a string".to_owned());
    }
    let start = *i;
    let mut j = start + 1;
    loop {
        match b.get(j) {
            None => return Err("unterminated string".to_owned()),
            Some(b'"') => break,
            Some(b'\\') => j += 2,
            Some(_) => j += 1,
        }
    }
    *i = j + 1;
    serde_json::from_str::<String>(&text[start..=j]).map_err(|e| e.to_string())
}

/// A string as serde_json writes it.
fn push_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

/// The canonical text of a JSON number token.
fn number(t: &str, out: &mut String) -> Result<(), String> {
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (mantissa, exp_text) = match rest.find(['e', 'E']) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
        None => (mantissa, ""),
    };
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(format!("malformed number {t:?}"));
    }
    // The exponent as written, exactly (a history may spell any exponent, and one capped would
    // make different numbers one text and equal ones two): its sign and its digits.
    let (exp_negative, exp_digits) = match exp_text {
        None => (false, ""),
        Some(e) => {
            let (negative, digits) = match e.as_bytes().first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("malformed exponent in {t:?}"));
            }
            (negative, digits.trim_start_matches('0'))
        }
    };
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    let lead = digits.bytes().take_while(|&c| c == b'0').count();
    digits.drain(..lead);
    if digits.is_empty() {
        out.push('0');
        return Ok(());
    }
    let trail = digits.bytes().rev().take_while(|&c| c == b'0').count();
    digits.truncate(digits.len() - trail);
    // The value is digits × 10^(exponent - frac.len() + trail); the shift is bounded by the
    // text's length.
    let shift = trail as i128 - frac.len() as i128;
    if negative {
        out.push('-');
    }
    out.push_str(&digits);
    match exponent_plus(exp_negative, exp_digits, shift) {
        Exponent::Small(exp)
            if exp >= 0 && digits.len() as i128 + exp <= INTEGER_DIGITS_MAX as i128 =>
        {
            out.extend(std::iter::repeat_n('0', exp as usize));
        }
        Exponent::Small(0) => {}
        Exponent::Small(exp) => {
            out.push('e');
            out.push_str(&exp.to_string());
        }
        Exponent::Large { negative, digits } => {
            out.push('e');
            if negative {
                out.push('-');
            }
            out.push_str(&digits);
        }
    }
    Ok(())
}

/// An exponent, exactly: in an `i128` while it fits with room to spare, else as its digits.
enum Exponent {
    Small(i128),
    Large { negative: bool, digits: String },
}

/// Exponent digits read as an `i128` while at most this many (far from its 38): beyond, the
/// exponent is added to as text.
const EXPONENT_DIGITS_SMALL_MAX: usize = 30;

/// The exponent written (`negative`, `digits` without leading zeros) plus `shift`, exactly.
fn exponent_plus(negative: bool, digits: &str, shift: i128) -> Exponent {
    if digits.len() <= EXPONENT_DIGITS_SMALL_MAX {
        let written: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().expect("at most 30 decimal digits")
        };
        return Exponent::Small(if negative { -written } else { written } + shift);
    }
    // |written| >= 10^30, far past |shift| (a text's length): the sign stays, and the magnitude
    // moves by the shift, towards zero for a negative exponent.
    const TAIL_DIGITS: usize = 20;
    const TAIL_MOD: i128 = 10i128.pow(TAIL_DIGITS as u32);
    debug_assert!(shift.abs() < TAIL_MOD);
    let delta = if negative { -shift } else { shift };
    let (head, tail) = digits.split_at(digits.len() - TAIL_DIGITS);
    let mut tail = tail.parse::<i128>().expect("20 decimal digits") + delta;
    let mut head = head.as_bytes().to_vec();
    if tail >= TAIL_MOD {
        tail -= TAIL_MOD;
        // Carry: 9s roll over to 0s, and a head of all 9s gains a digit.
        let mut i = head.len();
        loop {
            if i == 0 {
                head.insert(0, b'1');
                break;
            }
            i -= 1;
            if head[i] == b'9' {
                head[i] = b'0';
            } else {
                head[i] += 1;
                break;
            }
        }
    } else if tail < 0 {
        tail += TAIL_MOD;
        // Borrow: 0s roll over to 9s; the head is at least 10^10, so it has one to lend.
        let mut i = head.len();
        loop {
            i -= 1;
            if head[i] == b'0' {
                head[i] = b'9';
            } else {
                head[i] -= 1;
                break;
            }
        }
    }
    let mut text = String::from_utf8(head).expect("ASCII digits");
    text.push_str(&format!("{tail:020}"));
    let digits = text.trim_start_matches('0').to_owned();
    Exponent::Large { negative, digits }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(t: &str) -> String {
        let mut out = String::new();
        canonicalize(t, &mut out).unwrap();
        out
    }

    #[test]
    fn the_same_value_spelled_differently_is_one_text() {
        // history-format.md: key order and number spelling do not count.
        let same = [
            (
                r#"{"a":1,"b":[1.0,"x"]}"#,
                r#"{ "b" : [ 1e0 , "x" ] , "a" : 10e-1 }"#,
            ),
            ("1", "1.0"),
            ("1", "1e0"),
            ("1.5", "15e-1"),
            ("100", "1e2"),
            ("0", "-0.0"),
            ("-2.50", "-25E-1"),
            (r#""é""#, r#""\u00e9""#),
            (r#""a/b""#, r#""a\/b""#),
            (r#"{"k":1,"k":2}"#, r#"{"k":2}"#),
        ];
        for (a, b) in same {
            assert_eq!(canon(a), canon(b), "{a} vs {b}");
        }
        let different = [("1", "2"), ("1", "\"1\""), ("[1,2]", "[2,1]"), ("0.1", "1")];
        for (a, b) in different {
            assert_ne!(canon(a), canon(b), "{a} vs {b}");
        }
        assert_eq!(canon("1.50"), "15e-1");
        // Exponents of any size, exactly (a review found 1e1000000000000000 and
        // 1e1000000000000001 one text, and 1.5e1000000000000001 and 15e1000000000000000 two).
        for (a, b) in [
            ("1.5e1000000000000001", "15e1000000000000000"),
            ("1e999999999999999999999", "10e999999999999999999998"),
            ("1e-999999999999999999999", "0.1e-999999999999999999998"),
            (
                "12e99999999999999999999999999999999999",
                "1.2e100000000000000000000000000000000000",
            ),
            (
                "1e-100000000000000000000000000000000000",
                "0.1e-99999999999999999999999999999999999",
            ),
        ] {
            assert_eq!(canon(a), canon(b), "{a} vs {b}");
        }
        for (a, b) in [
            ("1e1000000000000000", "1e1000000000000001"),
            ("1e999999999999999999999", "1e999999999999999999998"),
            ("[1e1000000000000000,2]", "[1e1000000000000005,2]"),
            (
                "1e-99999999999999999999999999999999999",
                "1e99999999999999999999999999999999999",
            ),
        ] {
            assert_ne!(canon(a), canon(b), "{a} vs {b}");
        }
        assert_eq!(
            canon("1.2e100000000000000000000000000000000000"),
            "12e99999999999999999999999999999999999"
        );
        assert_eq!(canon("1e100"), "1e100");
        assert_eq!(canon("12e3"), "12000");
    }

    #[test]
    fn the_fast_check_never_accepts_a_text_that_would_change() {
        let texts = [
            r#"["p1-1","p2-3"]"#,
            r#"{"a":1,"b":{"c":[true,false,null]}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            "[1, 2]",
            "1.0",
            "-0",
            "0",
            "-12",
            "007",
            r#""x\ny""#,
            r#""plain""#,
            "1e5",
            "[]",
            "{}",
            "null",
        ];
        for t in texts {
            let c = canon(t);
            if is_canonical(t) {
                assert_eq!(c, t, "{t} was called canonical");
            }
            assert!(is_canonical(&c) || c.contains('\\'), "{c} is canonical");
            assert_eq!(canon(&c), c, "canonicalising is idempotent: {t}");
        }
        assert!(is_canonical(r#"["p1-1","p2-3"]"#));
        assert!(!is_canonical(r#"{"b":1,"a":2}"#));
        assert!(!is_canonical("[1, 2]"));
    }
}
