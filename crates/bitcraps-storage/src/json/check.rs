//! One pass over JSON text that accepts exactly what serde_json accepts when it parses a
//! value (RFC 8259: one value, whitespace around it; surrogate escapes only in pairs;
//! numbers within an `f64`'s range — what a typed read needs), nested at most
//! [`MAX_DEPTH`] arrays or objects deep. No value is built: the pass only moves an index and
//! a stack of container kinds (one bit each), so it can stop at a value's first byte and
//! resume there later from a [`Mark`] (`marks.rs`).

/// Deepest accepted nesting of arrays and objects (`[[1]]` is 2): serde_json's own limit
/// when it parses a value, which `check` applies to text kept as it is.
pub const MAX_DEPTH: u32 = 127;

/// Why text is not one JSON document, at which byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not JSON: the first byte that cannot continue a document (or the length, at its end).
    Syntax(usize),
    /// Nests more than [`MAX_DEPTH`] arrays or objects: the byte opening the one too many.
    TooDeep(usize),
}

/// The open containers at a value's first byte: how many, and which are objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct State {
    depth: u32,
    /// Bit `d` set: the container at depth `d + 1` is an object.
    objects: u128,
}

/// Where a value starts in a checked document, and the containers open there: the check of
/// another text with the same bytes up to and including `at` may resume here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) at: usize,
    pub(crate) state: State,
}

/// Bytes that end the plain run of a string: the quote, the backslash, control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The index after the string whose opening quote is at `i - 1`.
#[inline(always)]
fn string(b: &[u8], mut i: usize) -> Result<usize, Refusal> {
    loop {
        while let Some(&c) = b.get(i) {
            if STRING_STOP[usize::from(c)] {
                break;
            }
            i += 1;
        }
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    // A string must read back as text: a surrogate escape only as the
                    // first of a pair (serde_json refuses a lone one when it builds a
                    // `String`, so a typed read of the document would fail).
                    match hex_escape(b, i)? {
                        0xD800..=0xDBFF => {
                            let second = i + 6;
                            if b.get(second) != Some(&b'\\') || b.get(second + 1) != Some(&b'u') {
                                return Err(Refusal::Syntax(second));
                            }
                            if !matches!(hex_escape(b, second)?, 0xDC00..=0xDFFF) {
                                return Err(Refusal::Syntax(second));
                            }
                            i += 12;
                        }
                        0xDC00..=0xDFFF => return Err(Refusal::Syntax(i)),
                        _ => i += 6,
                    }
                }
                _ => return Err(Refusal::Syntax(i + 1)),
            },
            _ => return Err(Refusal::Syntax(i)),
        }
    }
}

/// The code unit of the `\uXXXX` escape whose backslash is at `i`.
#[inline(always)]
fn hex_escape(b: &[u8], i: usize) -> Result<u32, Refusal> {
    let mut unit = 0;
    for k in i + 2..i + 6 {
        let digit = match b.get(k) {
            Some(&c @ b'0'..=b'9') => c - b'0',
            Some(&c @ b'a'..=b'f') => c - b'a' + 10,
            Some(&c @ b'A'..=b'F') => c - b'A' + 10,
            _ => return Err(Refusal::Syntax(k)),
        };
        unit = unit << 4 | u32::from(digit);
    }
    Ok(unit)
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// Integer digits past which a number may be too large for an `f64` without an exponent.
const LONG_INTEGER: usize = 300;

/// The index after the number starting at `i`. A number must read back as a number: one
/// too large for an `f64` (`1e400`) is refused, as serde_json refuses it when it builds a
/// value, so a typed read of the document would fail.
#[inline(always)]
fn number(b: &[u8], mut i: usize) -> Result<usize, Refusal> {
    let start = i;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let integer = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return Err(Refusal::Syntax(i)),
    }
    let long = i - integer > LONG_INTEGER;
    if b.get(i) == Some(&b'.') {
        let after = digits(b, i + 1);
        if after == i + 1 {
            return Err(Refusal::Syntax(after));
        }
        i = after;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let after = digits(b, i);
        if after == i {
            return Err(Refusal::Syntax(after));
        }
        return finite(b, start, after);
    }
    if long {
        return finite(b, start, i);
    }
    Ok(i)
}

/// `end` when the number `b[start..end]` is within an `f64`'s range, else a refusal at it.
#[cold]
fn finite(b: &[u8], start: usize, end: usize) -> Result<usize, Refusal> {
    let text = b
        .get(start..end)
        .and_then(|n| std::str::from_utf8(n).ok())
        .ok_or(Refusal::Syntax(start))?;
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(end),
        _ => Err(Refusal::Syntax(start)),
    }
}

#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Refusal> {
    let end = i.saturating_add(word.len());
    match b.get(i..end) {
        Some(got) if got == word => Ok(end),
        _ => Err(Refusal::Syntax(i)),
    }
}

/// A key and its colon at `i` (whitespace skipped): the index of the value after them.
#[inline(always)]
fn key(b: &[u8], i: usize) -> Result<usize, Refusal> {
    if b.get(i) != Some(&b'"') {
        return Err(Refusal::Syntax(i));
    }
    let i = skip_ws(b, string(b, i + 1)?);
    if b.get(i) != Some(&b':') {
        return Err(Refusal::Syntax(i));
    }
    Ok(skip_ws(b, i + 1))
}

/// Checks that `text` is one JSON document (whitespace around it allowed).
pub(crate) fn check(text: &[u8]) -> Result<(), Refusal> {
    run(text, 0, State::default(), None)
}

/// Checks `text` like [`check`] and, when it is one document, returns a [`Mark`] at the
/// first value starting at or after each multiple of `stride` bytes.
pub(crate) fn check_marking(text: &[u8], stride: usize) -> Result<Vec<Mark>, Refusal> {
    let mut marks = Vec::new();
    run(text, 0, State::default(), Some((&mut marks, stride.max(1))))?;
    Ok(marks)
}

/// Checks `text` from `mark` on like [`check_from`] and, when it is one document, returns
/// the marks [`check_marking`] takes from `mark` on (the first is `mark` itself): the
/// marks of a new version after those it shares with the document `mark` was taken in.
pub(crate) fn check_marking_from(
    text: &[u8],
    mark: Mark,
    stride: usize,
) -> Result<Vec<Mark>, Refusal> {
    let mut marks = Vec::new();
    run(text, mark.at, mark.state, Some((&mut marks, stride.max(1))))?;
    Ok(marks)
}

/// Checks `text` from `mark` on: the verdict of [`check`] on `text` when its bytes up to and
/// including `mark.at` are those of the document `mark` was taken in.
pub(crate) fn check_from(text: &[u8], mark: Mark) -> Result<(), Refusal> {
    run(text, mark.at, mark.state, None)
}

/// Whether the innermost of `depth` open containers is an object.
#[inline(always)]
fn innermost_is_object(depth: u32, objects: u128) -> bool {
    depth > 0 && objects & (1 << (depth - 1)) != 0
}

/// The pass: from a value's first byte at `i` (or whitespace before it) with the containers
/// of `state` open, to the end of `text`.
fn run(
    b: &[u8],
    mut i: usize,
    state: State,
    mut marks: Option<(&mut Vec<Mark>, usize)>,
) -> Result<(), Refusal> {
    let State {
        mut depth,
        mut objects,
    } = state;
    let mut in_object = innermost_is_object(depth, objects);
    let mut next_mark = match &marks {
        Some(_) => 0,
        None => usize::MAX,
    };
    i = skip_ws(b, i);
    loop {
        // A value starts at `i`.
        if i >= next_mark
            && let Some((marks, stride)) = marks.as_mut()
        {
            marks.push(Mark {
                at: i,
                state: State { depth, objects },
            });
            next_mark = (i / *stride).saturating_add(1).saturating_mul(*stride);
        }
        let complete = match b.get(i) {
            Some(b'"') => {
                i = string(b, i + 1)?;
                true
            }
            Some(b'-' | b'0'..=b'9') => {
                i = number(b, i)?;
                true
            }
            Some(&open @ (b'{' | b'[')) => {
                if depth == MAX_DEPTH {
                    return Err(Refusal::TooDeep(i));
                }
                in_object = open == b'{';
                if in_object {
                    objects |= 1 << depth;
                } else {
                    objects &= !(1 << depth);
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                let close = if in_object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    i += 1;
                    depth -= 1;
                    in_object = innermost_is_object(depth, objects);
                    true
                } else {
                    if in_object {
                        i = key(b, i)?;
                    }
                    false
                }
            }
            Some(b't') => {
                i = literal(b, i, b"true")?;
                true
            }
            Some(b'f') => {
                i = literal(b, i, b"false")?;
                true
            }
            Some(b'n') => {
                i = literal(b, i, b"null")?;
                true
            }
            _ => return Err(Refusal::Syntax(i)),
        };
        if !complete {
            continue;
        }
        // After a complete value: a comma and the next value, or the ends of containers.
        loop {
            if depth == 0 {
                let rest = skip_ws(b, i);
                return if rest == b.len() {
                    Ok(())
                } else {
                    Err(Refusal::Syntax(rest))
                };
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    if in_object {
                        i = key(b, i)?;
                    }
                    break;
                }
                Some(b'}') if in_object => {
                    i += 1;
                    depth -= 1;
                    in_object = innermost_is_object(depth, objects);
                }
                Some(b']') if !in_object => {
                    i += 1;
                    depth -= 1;
                    in_object = innermost_is_object(depth, objects);
                }
                _ => return Err(Refusal::Syntax(i)),
            }
        }
    }
}
