use super::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[test]
fn hypers_automatic_head_is_replaced_and_keeps_its_other_fields() {
    let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 03:00:00 GMT\r\n\r\n";
    let (taken, out) = replace_automatic(head).expect("recognised");
    assert_eq!(taken, head.len());
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         cache-control: no-store\r\nconnection: close\r\ncontent-length: 16\r\n\
         date: Sat, 21 Nov 2026 03:00:00 GMT\r\n\r\n400 bad request\n"
    );
    // Without a date field, and for an HTTP/1.0 peer.
    let bare = b"HTTP/1.0 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\nrest";
    let (taken, out) = replace_automatic(bare).expect("recognised");
    assert_eq!(taken, bare.len() - 4);
    assert!(String::from_utf8(out)
        .unwrap()
        .ends_with("content-length: 36\r\n\r\n431 request header fields too large\n"));
    let uri = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
    assert!(replace_automatic(uri).is_some());
    // hyper's own `connection` field goes: the replacement has its own.
    let close =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: d\r\n\r\n";
    let (taken, out) = replace_automatic(close).expect("recognised");
    assert_eq!(taken, close.len());
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");
    assert!(
        out.ends_with("\r\ndate: d\r\n\r\n400 bad request\n"),
        "{out}"
    );
}

#[test]
fn other_heads_are_not_taken_for_hypers() {
    for head in [
        &b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n"[..],
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 00\r\n\r\n",
        b"HTTP/1.1 400 Nope\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        b"HTTP/2.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nconnection: upgrade\r\ncontent-length: 0\r\n\r\n",
    ] {
        assert!(
            replace_automatic(head).is_none(),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}

/// A duplex stream that says it writes vectored, so hyper queues its
/// buffers instead of flattening them (as it does on a TCP or TLS stream).
struct Vectored(DuplexStream);

impl AsyncRead for Vectored {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Vectored {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, b)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(&mut self.get_mut().0).poll_write(cx, first)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Serve one connection with hyper's HTTP/1 server through [`ClientIo`];
/// every request gets a bare 400 with an empty body (what an upstream's
/// bodiless 400 looks like once forwarded). Returns all the client read.
async fn serve<S>(server_side: S, mut client: DuplexStream, send: &[u8]) -> String
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(ConnWatch::default());
    let io = TokioIo::new(ClientIo::new(server_side, watch.clone()));
    let svc = service_fn(move |_req| {
        let open = watch.request_started();
        async move {
            let mut resp = http::Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            Ok::<_, Infallible>(open.attach(resp))
        }
    });
    let server = tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
    client.write_all(send).await.unwrap();
    let mut out = Vec::new();
    let _eof_or_reset = client.read_to_end(&mut out).await;
    let _parse_error = server.await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn both_ways(send: &[u8]) -> [String; 2] {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let flat = serve(a, b, send).await;
    let (a, b) = tokio::io::duplex(64 * 1024);
    let vectored = serve(Vectored(a), b, send).await;
    [flat, vectored]
}

#[tokio::test]
async fn a_malformed_request_gets_a_text_body_from_hyper_through_client_io() {
    for out in both_ways(b"GET / HTTP/1.1\r\nHost: h\r\nbad header\r\n\r\n").await {
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("\r\ncontent-length: 16\r\n"), "{out}");
        assert!(out.contains("\r\ncontent-type: text/plain"), "{out}");
        assert!(out.contains("\r\ndate: "), "{out}");
        assert!(out.ends_with("\r\n\r\n400 bad request\n"), "{out}");
    }
}

#[tokio::test]
async fn the_services_own_bare_400_passes_unchanged_and_a_later_bad_head_is_still_caught() {
    let send = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nBAD\x01 / HTTP/1.1\r\n\r\n";
    for out in both_ways(send).await {
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{out}");
        for service in &answers[..2] {
            assert!(
                service.starts_with("400 Bad Request\r\ncontent-length: 0\r\ndate: "),
                "{out}"
            );
            assert!(service.ends_with("\r\n\r\n"), "{out}");
        }
        assert!(answers[2].contains("content-length: 16\r\n"), "{out}");
        assert!(answers[2].ends_with("\r\n\r\n400 bad request\n"), "{out}");
    }
}

#[tokio::test]
async fn an_upgraded_connection_is_never_rewritten() {
    let watch = Arc::new(ConnWatch::default());
    let resp = http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .body(Full::new(Bytes::new()))
        .unwrap();
    drop(watch.request_started().attach(resp));
    let (a, mut b) = tokio::io::duplex(1024);
    let mut io = ClientIo::new(a, watch);
    io.flush().await.unwrap();
    let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    io.write_all(head).await.unwrap();
    drop(io);
    let mut out = Vec::new();
    b.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, head);
}

/// A writer that notes how each write reached it, and takes at most
/// `limit` bytes of one.
struct Recorder {
    calls: Vec<(&'static str, Vec<u8>)>,
    limit: usize,
}

impl AsyncWrite for Recorder {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = b.len().min(this.limit);
        this.calls.push(("write", b[..n].to_vec()));
        Poll::Ready(Ok(n))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let n = all.len().min(this.limit);
        this.calls.push(("writev", all[..n].to_vec()));
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn small_vectored_writes_go_out_as_one_plain_write() {
    let watch = Arc::new(ConnWatch::default());
    let recorder = Recorder {
        calls: Vec::new(),
        limit: usize::MAX,
    };
    let mut io = ClientIo::new(recorder, watch.clone());
    // A response is open: nothing hyper writes is its automatic answer.
    let _open = watch.request_started();
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
    let n = io
        .write_vectored(&[
            io::IoSlice::new(head),
            io::IoSlice::new(b""),
            io::IoSlice::new(b"hello"),
        ])
        .await
        .unwrap();
    assert_eq!(n, head.len() + 5);
    // One slice alone, and a write too large to copy, stay as they came.
    let big = vec![b'x'; GATHER_MAX];
    let one = io
        .write_vectored(&[io::IoSlice::new(b""), io::IoSlice::new(b"one")])
        .await
        .unwrap();
    assert_eq!(one, 3);
    let large = io
        .write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(&big)])
        .await
        .unwrap();
    assert_eq!(large, head.len() + big.len());
    let calls = &io.inner.calls;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0].0, "write");
    assert_eq!(calls[0].1, [&head[..], b"hello"].concat());
    assert_eq!((calls[1].0, &calls[1].1[..]), ("writev", &b"one"[..]));
    assert_eq!(calls[2].0, "writev");
    assert_eq!(calls[2].1.len(), head.len() + big.len());
}

#[tokio::test]
async fn a_gathered_write_taken_in_part_says_how_much() {
    let watch = Arc::new(ConnWatch::default());
    let recorder = Recorder {
        calls: Vec::new(),
        limit: 7,
    };
    let mut io = ClientIo::new(recorder, watch.clone());
    let _open = watch.request_started();
    let n = io
        .write_vectored(&[io::IoSlice::new(b"abcd"), io::IoSlice::new(b"efghij")])
        .await
        .unwrap();
    assert_eq!(n, 7);
    assert_eq!(io.inner.calls, [("write", b"abcdefg".to_vec())]);
}
