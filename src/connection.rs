//! Framed message I/O over a TCP stream: each frame is a u32 big-endian length followed by
//! one encoded [`Message`] (tokio-util's `LengthDelimitedCodec`). A frame longer than the
//! current maximum is refused from its length prefix alone, before anything is buffered.
//! `Ok(None)` from a read means the peer closed cleanly between frames; a close in the
//! middle of a frame is an error.
//!
//! A peer is declared dead by silence, not by size: [`MessageReader::read_within`] fails
//! only when no byte at all arrived for the whole limit, so a large frame crawling over a
//! slow link keeps its connection alive as long as it keeps moving.

use crate::error::{Error, Result};
use crate::net::stream::{ReadHalf, Stream, WriteHalf};
use crate::protocol::{self, Message, MAX_FRAME};
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedRead, FramedWrite, LengthDelimitedCodec};

/// tokio-util's length-delimited codec, remembering whether a frame has begun: the codec
/// drops a frame's header from its buffer before the body arrives, so at end of stream it
/// would take "header read, body missing" for a clean end between frames.
struct FrameDecoder {
    codec: LengthDelimitedCodec,
    in_frame: bool,
}

impl Decoder for FrameDecoder {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, buffer: &mut BytesMut) -> std::io::Result<Option<BytesMut>> {
        let before = buffer.len();
        let frame = self.codec.decode(buffer)?;
        self.in_frame = frame.is_none() && (self.in_frame || buffer.len() < before);
        Ok(frame)
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> std::io::Result<Option<BytesMut>> {
        match self.decode(buffer)? {
            Some(frame) => Ok(Some(frame)),
            None if self.in_frame || !buffer.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed in the middle of a frame",
            )),
            None => Ok(None),
        }
    }
}

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .big_endian()
        .max_frame_length(max_frame)
        .new_codec()
}

/// Splits a connection (plain or TLS) into a message reader and writer, the reader limited to
/// `max_frame` bytes per frame until raised with [`MessageReader::set_max_frame`].
pub fn split(
    stream: impl Into<Stream>,
    max_frame: usize,
) -> (MessageReader<ReadHalf>, MessageWriter<WriteHalf>) {
    let (read, write) = stream.into().into_split();
    (
        MessageReader::new(read, max_frame),
        MessageWriter::new(write),
    )
}

/// A byte stream that remembers when it last delivered bytes.
struct Watched<R> {
    inner: R,
    last_bytes: Instant,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_bytes = Instant::now();
        }
        polled
    }
}

/// Reads whole messages from a byte stream.
pub struct MessageReader<R> {
    frames: FramedRead<Watched<R>, FrameDecoder>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// A reader accepting frames up to `max_frame` bytes.
    pub fn new(read: R, max_frame: usize) -> Self {
        let decoder = FrameDecoder {
            codec: codec(max_frame),
            in_frame: false,
        };
        let watched = Watched {
            inner: read,
            last_bytes: Instant::now(),
        };
        MessageReader {
            frames: FramedRead::new(watched, decoder),
        }
    }

    /// Raise (or lower) the largest frame accepted from now on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.frames
            .decoder_mut()
            .codec
            .set_max_frame_length(max_frame.min(MAX_FRAME));
    }

    /// The next message; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn read(&mut self) -> Result<Option<Message>> {
        match self.frames.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(framing_error(e)),
            Some(Ok(frame)) => protocol::decode(&frame).map(Some),
        }
    }

    /// Like [`read`](Self::read), but the whole message must arrive within `limit`: for a
    /// handshake, which is small, so a stranger trickling bytes cannot hold a slot.
    pub async fn read_before(
        &mut self,
        limit: Duration,
        waiting_for: &str,
    ) -> Result<Option<Message>> {
        match tokio::time::timeout(limit, self.read()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(format!(
                "no {waiting_for} within {} ms",
                limit.as_millis()
            ))),
        }
    }

    /// Like [`read`](Self::read), but a peer from which no byte arrives for `limit` is an
    /// error: a half-sent frame or an idle peer cannot hold a task forever, while a large
    /// frame that keeps arriving, however slowly, is waited for.
    pub async fn read_within(
        &mut self,
        limit: Duration,
        waiting_for: &str,
    ) -> Result<Option<Message>> {
        let started = Instant::now();
        loop {
            // Silence counts from the last byte, or from now if that was earlier.
            let heard = self.frames.get_ref().last_bytes.max(started);
            let deadline = heard + limit;
            // `read` is cancel-safe: bytes of a frame already received stay buffered.
            if let Ok(result) = tokio::time::timeout_at(deadline, self.read()).await {
                return result;
            }
            if self.frames.get_ref().last_bytes.max(started) + limit <= Instant::now() {
                return Err(Error::Timeout(format!(
                    "nothing received for {} ms while waiting for {waiting_for}",
                    limit.as_millis()
                )));
            }
        }
    }
}

fn framing_error(e: std::io::Error) -> Error {
    if let Some(why) = crate::net::tls::failure(&e) {
        return Error::Tls(why);
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            Error::Protocol("connection closed in the middle of a frame".into())
        }
        std::io::ErrorKind::InvalidData => Error::Protocol(format!("bad frame: {e}")),
        _ => Error::Io(e),
    }
}

/// Writes whole messages to a byte stream.
pub struct MessageWriter<W> {
    frames: FramedWrite<W, LengthDelimitedCodec>,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    /// A writer on `write`.
    pub fn new(write: W) -> Self {
        MessageWriter {
            frames: FramedWrite::new(write, codec(MAX_FRAME)),
        }
    }

    /// Sends one message and flushes it.
    pub async fn send(&mut self, message: &Message) -> Result<()> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues one message without flushing, to send a batch with one [`flush`](Self::flush).
    pub async fn feed(&mut self, message: &Message) -> Result<()> {
        let frame = Bytes::from(protocol::encode(message)?);
        self.frames.feed(frame).await.map_err(framing_error)
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        SinkExt::<Bytes>::flush(&mut self.frames)
            .await
            .map_err(framing_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn round_trip_and_clean_end() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut writer = MessageWriter::new(a);
        let mut reader = MessageReader::new(b, MAX_FRAME);
        writer.send(&Message::Ack { seq: 5 }).await.expect("send");
        drop(writer);
        assert_eq!(
            reader.read().await.expect("read"),
            Some(Message::Ack { seq: 5 })
        );
        assert_eq!(reader.read().await.expect("end"), None);
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_refused_without_buffering() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut reader = MessageReader::new(b, 1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        let err = reader.read().await.expect_err("must refuse");
        assert!(err.to_string().contains("bad frame"), "{err}");
    }

    #[tokio::test]
    async fn close_right_after_a_header_is_an_error() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut reader = MessageReader::new(b, 1024);
        a.write_all(&[0, 0, 0, 10]).await.expect("write");
        drop(a);
        let err = reader.read().await.expect_err("truncated after the header");
        assert!(err.to_string().contains("middle of a frame"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_frame_is_waited_for_but_silence_is_not() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut reader = MessageReader::new(b, MAX_FRAME);
        let frame = protocol::encode(&Message::Ack { seq: 9 }).expect("encode");
        let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&frame);
        let limit = Duration::from_secs(5);
        let trickle = async move {
            // One byte every 3 s: the frame takes far longer than the limit to arrive.
            for byte in bytes {
                tokio::time::sleep(Duration::from_secs(3)).await;
                a.write_all(&[byte]).await.expect("write");
            }
            a
        };
        let (read, a) = tokio::join!(reader.read_within(limit, "a frame"), trickle);
        assert_eq!(read.expect("alive"), Some(Message::Ack { seq: 9 }));
        let silent = reader.read_within(limit, "a frame").await;
        assert!(
            matches!(silent, Err(Error::Timeout(_))),
            "silence must end the wait: {silent:?}"
        );
        drop(a);
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut reader = MessageReader::new(b, 1024);
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.expect("write");
        drop(a);
        let err = reader.read().await.expect_err("truncated");
        assert!(err.to_string().contains("middle of a frame"), "{err}");
    }
}
