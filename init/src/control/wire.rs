//! The varlink wire format: every message is one JSON object followed by a NUL byte
//! (<https://varlink.org/Method-Call>). This module frames a byte stream into messages, parses
//! calls and builds replies; it knows nothing about sockets or smss's methods.

use serde_json::{Map, Value};

/// The largest message accepted (and the largest one produced). A peer that sends more than
/// this without a NUL is cut off: PID 1's memory is not for strangers to fill.
pub const MAX_MESSAGE: usize = 1 << 20;

/// One method call, as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Fully qualified: `io.smss.Manager.GetStatus`.
    pub method: String,
    /// `parameters`, `{}` when absent.
    pub parameters: Map<String, Value>,
    /// No reply is wanted.
    pub oneway: bool,
    /// The client accepts several replies (`continues`); we always send exactly one.
    pub more: bool,
    /// The client wants to take the connection over after the reply (not supported).
    pub upgrade: bool,
}

impl Call {
    /// The interface part of `method` (`io.smss.Manager`), `""` for a name without a dot.
    pub fn interface(&self) -> &str {
        self.method.rsplit_once('.').map_or("", |(i, _)| i)
    }

    /// The member part of `method` (`GetStatus`).
    pub fn member(&self) -> &str {
        self.method
            .rsplit_once('.')
            .map_or(&self.method, |(_, m)| m)
    }
}

/// Why a message is not a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("failed to parse message: {0}")]
    Json(String),
    #[error("failed to parse message: not a JSON object")]
    NotAnObject,
    #[error("failed to parse message: `method` is missing or not a string")]
    NoMethod,
    #[error("failed to parse message: `{0}` has the wrong type")]
    BadField(&'static str),
    #[error("message longer than {MAX_MESSAGE} bytes")]
    TooLong,
}

/// Parse one message (without its NUL).
pub fn parse_call(bytes: &[u8]) -> Result<Call, WireError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(WireError::NotAnObject);
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err(WireError::NoMethod),
    };
    let parameters = match obj.remove("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(WireError::BadField("parameters")),
    };
    let flag = |obj: &Map<String, Value>, name: &'static str| match obj.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(WireError::BadField(name)),
    };
    Ok(Call {
        oneway: flag(&obj, "oneway")?,
        more: flag(&obj, "more")?,
        upgrade: flag(&obj, "upgrade")?,
        method,
        parameters,
    })
}

/// Encode a call (the client side), NUL included.
pub fn encode_call(method: &str, parameters: Value, oneway: bool) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("method".into(), Value::String(method.into()));
    obj.insert("parameters".into(), parameters);
    if oneway {
        obj.insert("oneway".into(), Value::Bool(true));
    }
    terminate(Value::Object(obj))
}

/// A successful reply, NUL included.
pub fn encode_reply(parameters: Value) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("parameters".into(), parameters);
    terminate(Value::Object(obj))
}

/// An error reply, NUL included.
pub fn encode_error(error: &str, parameters: Value) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("error".into(), Value::String(error.into()));
    obj.insert("parameters".into(), parameters);
    terminate(Value::Object(obj))
}

fn terminate(v: Value) -> Vec<u8> {
    // Serialising a Value built from maps and strings cannot fail.
    let mut out = serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec());
    out.push(0);
    out
}

/// A reply as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok(Value),
    Error { error: String, parameters: Value },
}

/// Parse a reply (the client side).
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, WireError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(WireError::NotAnObject);
    };
    let parameters = obj
        .remove("parameters")
        .unwrap_or(Value::Object(Map::new()));
    match obj.remove("error") {
        None | Some(Value::Null) => Ok(Reply::Ok(parameters)),
        Some(Value::String(error)) => Ok(Reply::Error { error, parameters }),
        Some(_) => Err(WireError::BadField("error")),
    }
}

/// Splits a byte stream into NUL-terminated messages, holding at most one partial message of
/// at most `limit` bytes ([`MAX_MESSAGE`] unless told otherwise).
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    limit: usize,
    /// Start of the first unconsumed byte.
    start: usize,
    /// Bytes before this offset (from `start`) are known to contain no NUL.
    scanned: usize,
}

impl Default for Framer {
    fn default() -> Framer {
        Framer::new()
    }
}

impl Framer {
    pub fn new() -> Framer {
        Framer::with_limit(MAX_MESSAGE)
    }

    /// A framer whose messages may be at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            limit,
            start: 0,
            scanned: 0,
        }
    }

    /// The longest message this framer accepts.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Append bytes read from the peer.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            // Keep the buffer from growing with consumed bytes.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet a complete message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, without its NUL. `Err(TooLong)` once more than
    /// `limit` bytes arrived without a NUL (the stream cannot be resynchronised; the
    /// caller should close it).
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, WireError>> {
        let unread = self.buf.get(self.start + self.scanned..)?;
        match unread.iter().position(|&b| b == 0) {
            Some(i) => {
                let end = self.start + self.scanned + i;
                let msg = self.buf.get(self.start..end).map(<[u8]>::to_vec)?;
                self.start = end + 1;
                self.scanned = 0;
                if msg.len() > self.limit {
                    return Some(Err(WireError::TooLong));
                }
                Some(Ok(msg))
            }
            None => {
                self.scanned = self.pending();
                (self.scanned > self.limit).then_some(Err(WireError::TooLong))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_framer_with_a_small_limit_refuses_longer_messages() {
        let mut f = Framer::with_limit(8);
        f.push(b"12345678\0");
        assert_eq!(f.next_message(), Some(Ok(b"12345678".to_vec())));
        f.push(b"123456789\0");
        assert_eq!(f.next_message(), Some(Err(WireError::TooLong)));
        let mut f = Framer::with_limit(8);
        f.push(b"123456789");
        assert_eq!(f.next_message(), Some(Err(WireError::TooLong)));
    }

    #[test]
    fn parses_a_call() {
        let c = parse_call(
            br#"{"method":"io.smss.Manager.GetStatus","parameters":{"a":1},"more":true}"#,
        )
        .unwrap();
        assert_eq!(c.method, "io.smss.Manager.GetStatus");
        assert_eq!(c.interface(), "io.smss.Manager");
        assert_eq!(c.member(), "GetStatus");
        assert_eq!(c.parameters.get("a"), Some(&json!(1)));
        assert!(c.more && !c.oneway && !c.upgrade);
        let c = parse_call(br#"{"method":"x.Y"}"#).unwrap();
        assert!(c.parameters.is_empty());
    }

    #[test]
    fn rejects_bad_messages() {
        assert!(matches!(parse_call(b"{"), Err(WireError::Json(_))));
        assert_eq!(parse_call(b"[1]"), Err(WireError::NotAnObject));
        assert_eq!(parse_call(b"{}"), Err(WireError::NoMethod));
        assert_eq!(parse_call(br#"{"method":7}"#), Err(WireError::NoMethod));
        assert_eq!(
            parse_call(br#"{"method":"a.B","parameters":[]}"#),
            Err(WireError::BadField("parameters"))
        );
        assert_eq!(
            parse_call(br#"{"method":"a.B","oneway":"yes"}"#),
            Err(WireError::BadField("oneway"))
        );
        assert!(parse_call(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn replies_round_trip() {
        let r = encode_reply(json!({"id": 3}));
        assert_eq!(r.last(), Some(&0));
        assert_eq!(
            parse_reply(&r[..r.len() - 1]).unwrap(),
            Reply::Ok(json!({"id": 3}))
        );
        let e = encode_error("io.smss.Manager.NoSuchSession", json!({"id": 3}));
        assert_eq!(
            parse_reply(&e[..e.len() - 1]).unwrap(),
            Reply::Error {
                error: "io.smss.Manager.NoSuchSession".into(),
                parameters: json!({"id": 3})
            }
        );
        let c = encode_call("a.B", json!({}), true);
        let call = parse_call(&c[..c.len() - 1]).unwrap();
        assert!(call.oneway);
    }

    #[test]
    fn frames_split_and_joined_messages() {
        let mut f = Framer::new();
        f.push(b"{\"a\":1}\0{\"b\"");
        assert_eq!(f.next_message(), Some(Ok(b"{\"a\":1}".to_vec())));
        assert_eq!(f.next_message(), None);
        f.push(b":2}\0\0");
        assert_eq!(f.next_message(), Some(Ok(b"{\"b\":2}".to_vec())));
        assert_eq!(f.next_message(), Some(Ok(Vec::new())));
        assert_eq!(f.next_message(), None);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn too_long_without_nul() {
        let mut f = Framer::new();
        let chunk = vec![b'x'; 64 * 1024];
        let mut res = None;
        for _ in 0..20 {
            f.push(&chunk);
            if let Some(r) = f.next_message() {
                res = Some(r);
                break;
            }
        }
        assert_eq!(res, Some(Err(WireError::TooLong)));
    }

    #[test]
    fn exactly_max_is_accepted() {
        let mut f = Framer::new();
        let mut m = vec![b' '; MAX_MESSAGE];
        m.push(0);
        f.push(&m);
        assert_eq!(
            f.next_message().map(|r| r.map(|v| v.len())),
            Some(Ok(MAX_MESSAGE))
        );
    }

    /// Bounded random input: the framer and parser never panic and never hold more than a
    /// message's worth of bytes (the fuzz target does the same with coverage guidance).
    #[test]
    fn random_input_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"{}[]\":,0123456789.eE+-truefalsnl \\u\0method parameters oneway";
        for _ in 0..2000 {
            let mut f = Framer::new();
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 8 == 0 {
                        (r >> 8) as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            for piece in bytes.chunks(1 + (next() % 17) as usize) {
                f.push(piece);
                while let Some(Ok(m)) = f.next_message() {
                    let _ = parse_call(&m);
                    let _ = parse_reply(&m);
                }
            }
            assert!(f.pending() <= len);
        }
    }
}
