//! A connection's outgoing side: replies are appended to one buffer and written in one
//! go when the connection has nothing more to execute, or earlier once [`FLUSH_AT`] bytes
//! are due, so a pipeline costs one round trip and a long reply streams.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Replies are sent once this many bytes are queued, even mid-pipeline.
pub const FLUSH_AT: usize = 64 * 1024;
/// A reply buffer grown beyond this by a large reply is released once flushed.
const KEEP_BUFFER: usize = 1024 * 1024;

/// Where a connection's replies go.
pub struct Output {
    buffer: BytesMut,
    write: Box<dyn AsyncWrite + Unpin + Send>,
}

impl Output {
    /// Replies to `write`.
    pub fn new(write: Box<dyn AsyncWrite + Unpin + Send>) -> Self {
        Output {
            buffer: BytesMut::new(),
            write,
        }
    }

    /// The buffer replies are appended to.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.write.write_all(&self.buffer).await?;
            self.buffer.clear();
            // Over TLS, part of the last record may still wait in the session.
            self.write.flush().await?;
        }
        // One large reply must not pin its buffer for the rest of the connection.
        if self.buffer.capacity() > KEEP_BUFFER {
            self.buffer = BytesMut::new();
        }
        Ok(())
    }

    /// Sends what is queued once it reaches [`FLUSH_AT`] bytes.
    pub async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.buffer.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Flushes, then closes the sending side.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.write.shutdown().await
    }
}
