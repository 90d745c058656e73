//! A request's head (request line and headers), read and checked before HTTP serves it, so that
//! what HTTP itself would refuse — a malformed head, an overlong target, too many or too large
//! headers — gets the API's JSON error like every other refusal, not a bare status line.
//!
//! One request per connection: the head read here is handed on with the connection, and HTTP
//! closes the connection after answering it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// The longest head read: the request line and every header together.
pub const HEAD_LIMIT: usize = 96 * 1024;
/// The longest request line (method, target, version): HTTP's own limit on a target.
pub const URI_LIMIT: usize = 65_534;
/// The most headers a request may have.
const MAX_HEADERS: usize = 100;

/// Why a head was refused: the status line, the error code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    status: &'static str,
    code: &'static str,
    message: String,
}

/// Read one request's head from `stream`. `Ok(Some(head))` is every byte read (the head and
/// perhaps the start of its body), to be replayed to HTTP; `Ok(None)` the client left before
/// sending a whole head.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Result<Option<Vec<u8>>, Refused>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Ok(None));
        }
        buf.extend_from_slice(&chunk[..n]);
        let line = buf.windows(2).position(|w| w == b"\r\n").unwrap_or(buf.len());
        if line > URI_LIMIT {
            return Ok(Err(Refused {
                status: "414 URI Too Long",
                code: "uri_too_long",
                message: format!("the request line is over {URI_LIMIT} bytes"),
            }));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return Ok(Ok(Some(buf))),
            Ok(httparse::Status::Partial) if buf.len() < HEAD_LIMIT => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Ok(Err(Refused {
                    status: "431 Request Header Fields Too Large",
                    code: "headers_too_large",
                    message: format!("the request's headers are over {HEAD_LIMIT} bytes or {MAX_HEADERS} headers"),
                }))
            }
            Err(e) => {
                return Ok(Err(Refused {
                    status: "400 Bad Request",
                    code: "bad_request",
                    message: format!("the request is not valid HTTP/1.1: {e}"),
                }))
            }
        }
    }
}

/// Answer `refused` as the API answers every error, and close.
pub async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refused: &Refused) {
    answer(stream, refused.status, refused.code, &refused.message).await
}

/// Write a JSON error answer with `status` (e.g. `400 Bad Request`) and close the connection.
pub async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, status: &str, code: &str, message: &str) {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let answer =
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A connection whose first bytes were already read: they are read again first.
pub struct Replay<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    /// `inner`, with `head` read before anything else from it.
    pub fn new(head: Vec<u8>, inner: S) -> Self {
        Replay { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_head_is_replayed_whole_before_the_rest() {
        let request = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nok";
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(request).await.unwrap();
        drop(client);
        let head = read(&mut server).await.unwrap().unwrap().unwrap();
        let mut all = Vec::new();
        Replay::new(head, server).read_to_end(&mut all).await.unwrap();
        assert_eq!(all, request);
    }

    #[tokio::test]
    async fn a_client_that_leaves_early_is_no_refusal() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HT").await.unwrap();
        drop(client);
        assert_eq!(read(&mut server).await.unwrap(), Ok(None));
    }
}
