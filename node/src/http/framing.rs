//! Request body framing (RFC 9112 §6): which headers say where a request ends, and the chunk
//! size lines of a chunked body. Pure functions; the connection loop acts on their verdicts.
//!
//! Strict where a lenient reading could let a proxy in front and this node disagree about where
//! a request ends (request smuggling): more than one `Content-Length`, a list in it, anything
//! but digits, `Content-Length` together with `Transfer-Encoding`, a `Transfer-Encoding` whose
//! last coding is not `chunked` or that applies `chunked` twice, `Transfer-Encoding` in an
//! HTTP/1.0 request, and a chunk size that is not plain hex are all refused, and the
//! connection is closed after the answer.

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (`u64::MAX` stands for any number too large for a `u64`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request's framing cannot be trusted; the answer is followed by closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// 400 Bad Request.
    #[error("{0}")]
    Bad(&'static str),
    /// 501 Not Implemented: a transfer coding other than `chunked`.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// The framing of a request with these headers (`http11`: the request line says HTTP/1.1).
pub fn of(headers: &HeaderMap, http11: bool) -> Result<Framing, FramingError> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(FramingError::Bad("more than one Content-Length header"));
    }
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if !http11 {
            return Err(FramingError::Bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if length.is_some() {
            return Err(FramingError::Bad(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        let mut chunked_seen = false;
        let mut last_is_chunked = false;
        for value in codings {
            let text = value
                .to_str()
                .map_err(|_| FramingError::Bad("invalid Transfer-Encoding"))?;
            for coding in text.split(',').map(|c| c.trim_matches([' ', '\t'])) {
                if coding.is_empty() {
                    continue;
                }
                last_is_chunked = coding.eq_ignore_ascii_case("chunked");
                if !last_is_chunked {
                    continue;
                }
                if chunked_seen {
                    return Err(FramingError::Bad("chunked applied more than once"));
                }
                chunked_seen = true;
            }
        }
        if !last_is_chunked {
            return Err(FramingError::Bad("Transfer-Encoding must end with chunked"));
        }
        // `chunked` last, and something else before it (gzip, deflate, ...).
        let only_chunked = headers.get_all(TRANSFER_ENCODING).iter().all(|v| {
            v.to_str().is_ok_and(|t| {
                t.split(',')
                    .map(|c| c.trim_matches([' ', '\t']))
                    .all(|c| c.is_empty() || c.eq_ignore_ascii_case("chunked"))
            })
        });
        if !only_chunked {
            return Err(FramingError::Unsupported(
                "only the chunked transfer coding is supported",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let Some(value) = length else {
        return Ok(Framing::Empty);
    };
    let digits = value.as_bytes().trim_ascii();
    if digits.contains(&b',') {
        return Err(FramingError::Bad("Content-Length is a list"));
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(FramingError::Bad("invalid Content-Length"));
    }
    let n = digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Ok(Framing::Length(n.unwrap_or(u64::MAX)))
}

/// Parses a chunk-size line without its CRLF: hex digits, then optionally whitespace and
/// `;extensions` (ignored). A size too large for a `u64` comes back as `u64::MAX`.
pub fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    const BAD: FramingError = FramingError::Bad("invalid chunk size line");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BAD);
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count()..];
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(BAD);
    }
    // Extensions: visible characters, spaces and tabs only (no bare CR or LF).
    if !rest
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        return Err(BAD);
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(v))
    });
    Ok(size.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn bad(pairs: &[(&'static str, &'static str)]) -> &'static str {
        match of(&headers(pairs), true) {
            Err(FramingError::Bad(why)) => why,
            other => panic!("expected 400 for {pairs:?}, got {other:?}"),
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(of(&headers(&[]), true), Ok(Framing::Empty));
        assert_eq!(
            of(&headers(&[("content-length", "42")]), true),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            of(&headers(&[("content-length", "0")]), false),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            of(
                &headers(&[("content-length", "99999999999999999999999")]),
                true
            ),
            Ok(Framing::Length(u64::MAX)),
            "too large for u64: refused as too large, not wrapped"
        );
        assert_eq!(
            bad(&[("content-length", "5"), ("content-length", "6")]),
            "more than one Content-Length header"
        );
        assert_eq!(
            bad(&[("content-length", "5"), ("content-length", "5")]),
            "more than one Content-Length header"
        );
        assert_eq!(
            bad(&[("content-length", "5, 5")]),
            "Content-Length is a list"
        );
        for v in ["+5", "-1", "0x10", "5 5", "", "1e3", "５"] {
            let mut h = HeaderMap::new();
            h.append(
                "content-length",
                HeaderValue::from_bytes(v.as_bytes()).expect("value"),
            );
            assert_eq!(
                of(&h, true),
                Err(FramingError::Bad("invalid Content-Length")),
                "{v:?}"
            );
        }
    }

    #[test]
    fn transfer_codings() {
        assert_eq!(
            of(&headers(&[("transfer-encoding", "chunked")]), true),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            of(&headers(&[("transfer-encoding", "Chunked")]), true),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            bad(&[("transfer-encoding", "chunked"), ("content-length", "3")]),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            bad(&[("transfer-encoding", "gzip")]),
            "Transfer-Encoding must end with chunked"
        );
        assert_eq!(
            bad(&[("transfer-encoding", "chunked, gzip")]),
            "Transfer-Encoding must end with chunked"
        );
        assert_eq!(
            bad(&[("transfer-encoding", "xchunked")]),
            "Transfer-Encoding must end with chunked"
        );
        assert_eq!(
            bad(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            "chunked applied more than once"
        );
        assert_eq!(
            of(&headers(&[("transfer-encoding", "gzip, chunked")]), true),
            Err(FramingError::Unsupported(
                "only the chunked transfer coding is supported"
            ))
        );
        assert_eq!(
            of(&headers(&[("transfer-encoding", "chunked")]), false),
            Err(FramingError::Bad(
                "Transfer-Encoding in an HTTP/1.0 request"
            ))
        );
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"0"), Ok(0));
        assert_eq!(chunk_size(b"1a"), Ok(26));
        assert_eq!(chunk_size(b"FF;name=value"), Ok(255));
        assert_eq!(chunk_size(b"10 ; ext"), Ok(16));
        assert_eq!(chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(
            chunk_size(b"1ffffffffffffffff"),
            Ok(u64::MAX),
            "saturates, never wraps"
        );
        assert_eq!(chunk_size(b"00000000000000000000001"), Ok(1));
        for line in [
            &b""[..],
            b"+1",
            b"-1",
            b"0x10",
            b" 1",
            b"1 2",
            b"g",
            b"1;a\nb",
            b"1;a\rb",
            b"1\x00",
        ] {
            assert!(chunk_size(line).is_err(), "{line:?}");
        }
    }
}
