//! Raw HTTP/1.1 over TCP, for requests no well-behaved client would send
//! (smuggling attempts, trickled heads, oversized fields) and for reading
//! exactly what came back.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Read more bytes; false at EOF or on an error (a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response (a body framed by Content-Length or chunked), or
    /// `None` when the connection closed first. Panics after `deadline`.
    pub async fn response(&mut self, deadline: Duration) -> Option<RawResponse> {
        tokio::time::timeout(deadline, self.next_response())
            .await
            .expect("a response or a close within the deadline")
    }

    /// The next response to a HEAD request: its head, no body whatever its
    /// length fields say.
    pub async fn head_response(&mut self, deadline: Duration) -> Option<RawResponse> {
        tokio::time::timeout(deadline, self.read_head())
            .await
            .expect("a response or a close within the deadline")
    }

    async fn next_response(&mut self) -> Option<RawResponse> {
        let mut resp = self.read_head().await?;
        if matches!(resp.status, 100..=199 | 204 | 304) {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            resp.body = self.chunked().await?;
        } else {
            let len: usize = resp
                .header("content-length")
                .map_or(0, |v| v.parse().expect("content-length"));
            while self.buf.len() < len {
                if !self.fill().await {
                    return None;
                }
            }
            resp.body = self.buf.drain(..len).collect();
        }
        Some(resp)
    }

    async fn read_head(&mut self) -> Option<RawResponse> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_end + 4);
        Some(RawResponse {
            status,
            headers,
            body: Vec::new(),
        })
    }

    async fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !self.fill().await {
                    return None;
                }
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                if !self.fill().await {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Some(body);
            }
        }
    }

    /// Whether the peer closes the connection within `deadline` (whatever it
    /// sends before is read and dropped).
    pub async fn closes_within(&mut self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, async { while self.fill().await {} })
            .await
            .is_ok()
    }
}

/// Send `bytes` on a new connection and read up to `n` responses.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], n: usize) -> Vec<RawResponse> {
    let mut c = RawConn::connect(addr).await;
    c.send(bytes).await;
    let mut out = Vec::new();
    for _ in 0..n {
        match c.response(Duration::from_secs(5)).await {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

/// A request as a strict HTTP/1.1 reader would frame it.
#[derive(Debug, Clone)]
pub struct FramedRequest {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FramedRequest {
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// Frame a byte stream sent to an upstream into requests, strictly (CRLF
/// only; Content-Length or chunked, never both): what an upstream reads.
/// Panics on anything a strict reader could take two ways.
pub fn frame_requests(mut bytes: &[u8]) -> Vec<FramedRequest> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!(
                "an incomplete head was forwarded: {:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
        assert!(
            !head.replace("\r\n", "").contains('\n') && !head.replace("\r\n", "").contains('\r'),
            "a bare CR or LF was forwarded: {head:?}"
        );
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("a header line");
                assert_eq!(n, n.trim(), "whitespace around a field name: {l:?}");
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        bytes = &bytes[end + 4..];
        let req = FramedRequest {
            line,
            headers,
            body: Vec::new(),
        };
        let cl = req.header_count("content-length");
        let te = req.header_count("transfer-encoding");
        assert!(
            cl == 0 || te == 0,
            "both Content-Length and Transfer-Encoding: {req:?}"
        );
        assert!(cl <= 1 && te <= 1, "a repeated framing header: {req:?}");
        let mut req = req;
        if te == 1 {
            let v = req
                .headers
                .iter()
                .find(|(n, _)| n == "transfer-encoding")
                .unwrap();
            assert_eq!(v.1, "chunked", "a transfer coding other than chunked");
            loop {
                let Some(le) = bytes.windows(2).position(|w| w == b"\r\n") else {
                    // A body cut off by an aborted forward: the upstream sees it broken.
                    out.push(req);
                    return out;
                };
                let size = usize::from_str_radix(std::str::from_utf8(&bytes[..le]).unwrap(), 16)
                    .expect("a plain hex chunk size");
                bytes = &bytes[le + 2..];
                if bytes.len() < size + 2 {
                    out.push(req);
                    return out;
                }
                req.body.extend_from_slice(&bytes[..size]);
                assert_eq!(&bytes[size..size + 2], b"\r\n");
                bytes = &bytes[size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else if cl == 1 {
            let v = req
                .headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .unwrap();
            let len: usize = v.1.parse().expect("a plain decimal length");
            let take = len.min(bytes.len());
            req.body = bytes[..take].to_vec();
            bytes = &bytes[take..];
        }
        out.push(req);
    }
    out
}

/// An upstream that answers every request head (bodies are not expected)
/// with the same raw bytes, on 127.0.0.1:0, until the runtime ends.
pub async fn raw_upstream(answer: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// Send `bytes` on a new connection and read the one answer, which may be a
/// refusal sent before the whole head was read (so a failed write is fine).
/// The connection comes back too, to see what becomes of it.
pub async fn answer_to(addr: SocketAddr, bytes: &[u8], what: &str) -> (RawConn, RawResponse) {
    let mut c = RawConn::connect(addr).await;
    let _sent = c.stream.write_all(bytes).await;
    let r = c
        .response(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{what}: no answer"));
    (c, r)
}
