//! A blocking varlink client for `smctl` and the tests: one call, one reply.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::wire::{self, Framer, Reply, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to talk to {path}: {source}{}", connect_hint(.source))]
    Io { path: String, source: io::Error },
    #[error("bad reply from smss: {0}")]
    Protocol(#[from] WireError),
    #[error("smss closed the connection without a reply")]
    Closed,
}

/// What a failed connection means to a user (errors of a connect only; none for the rest).
fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => {
            " (no control socket there: is smss running, and serving this path? \
             [control] socket, smctl --socket)"
        }
        io::ErrorKind::ConnectionRefused => {
            " (nobody listens: smss is not running, and the socket is left over)"
        }
        io::ErrorKind::PermissionDenied => {
            " (the control socket is for root and [control] allowed-group)"
        }
        _ => "",
    }
}

pub struct Client {
    stream: UnixStream,
    path: String,
    framer: Framer,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let io_err = |source| ClientError::Io {
            path: path.display().to_string(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io_err)?;
        Ok(Client {
            stream,
            path: path.display().to_string(),
            framer: Framer::new(),
        })
    }

    /// Give up on a reply after `t` (None: wait forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        self.stream
            .set_read_timeout(t)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Call `method` and wait for its reply.
    pub fn call(&mut self, method: &str, parameters: Value) -> Result<Reply, ClientError> {
        let msg = wire::encode_call(method, parameters, false);
        if let Err(source) = self.stream.write_all(&msg) {
            // A server that refuses the connection says why, then closes it: its answer
            // (`LimitReached`) is the reply, not the "Broken pipe" of the write after it.
            return match self.read_reply() {
                Ok(reply) => Ok(reply),
                Err(_) => Err(ClientError::Io {
                    path: self.path.clone(),
                    source,
                }),
            };
        }
        self.read_reply()
    }

    /// Wait for the next reply.
    fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(m) = self.framer.next_message() {
                return Ok(wire::parse_reply(&m?)?);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.framer.push(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ClientError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A server that refuses a connection answers `LimitReached` and closes at once; a call
    /// written after that fails with EPIPE, and the client must report the server's answer,
    /// not "Broken pipe".
    #[test]
    fn a_refusal_read_before_the_call_is_the_reply() {
        let dir = std::env::temp_dir().join(format!("smss-client-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut client = Client::connect(&path).unwrap();
        client.set_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(
            b"{\"error\":\"io.smss.Manager.LimitReached\",\"parameters\":{\"limit\":\"connections\",\"value\":256}}\0",
        )
        .unwrap();
        drop(conn);
        match client.call("io.smss.Manager.GetStatus", serde_json::json!({})) {
            Ok(Reply::Error { error, parameters }) => {
                assert_eq!(error, "io.smss.Manager.LimitReached");
                assert_eq!(parameters["limit"], "connections");
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Why a connection failed, in the words a user can act on: no socket, a socket nobody
    /// listens on (smss is not running: a socket left over), or one the caller may not use.
    #[test]
    fn a_failed_connection_says_what_it_means() {
        let dir = std::env::temp_dir().join(format!("smss-client-hint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing");
        let e = Client::connect(&missing).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("failed to talk to {}: ", missing.display()))
                && e.contains("no control socket there: is smss running, and serving this path?"),
            "{e}"
        );
        let stale = dir.join("stale");
        drop(UnixListener::bind(&stale).unwrap());
        let e = Client::connect(&stale).err().unwrap().to_string();
        assert!(
            e.contains("nobody listens: smss is not running, and the socket is left over"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
