//! A blocking varlink client for `smctl` and the tests: one call, one reply.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::wire::{self, Framer, Reply, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to talk to {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("bad reply from smss: {0}")]
    Protocol(#[from] WireError),
    #[error("smss closed the connection without a reply")]
    Closed,
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
        self.stream
            .write_all(&msg)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
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
