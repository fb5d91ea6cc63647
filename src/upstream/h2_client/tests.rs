use super::*;
use crate::upstream::copied::{CopiedBody, RequestBody};
use futures_util::future::poll_fn;
use http_body_util::BodyExt;
use tokio::io::DuplexStream;
use tokio::time::Instant;

const SETTINGS: H2Settings = H2Settings {
    conn_window: 5 * 1024 * 1024,
    stream_window: 2 * 1024 * 1024,
    ping_interval: Duration::from_secs(20),
    ping_timeout: Duration::from_secs(10),
};

fn request(pieces: &[&'static [u8]]) -> Request<ClientBody> {
    let pieces: Vec<Bytes> = pieces.iter().map(|p| Bytes::from_static(p)).collect();
    let body = RequestBody::Copy(CopiedBody::new(pieces.into()));
    Request::builder()
        .method("POST")
        .uri("http://app.test/bench.Bench/Call")
        .header("te", "trailers")
        .body(ClientBody::new(body, Duration::from_secs(5)))
        .expect("request")
}

/// An HTTP/2 upstream on `io` that grants each stream `window` bytes, reads
/// one request whole and answers with its length, then `grpc-status: 0`
/// in trailers. Its connection keeps running (answering pings) afterwards.
async fn counting_upstream(io: DuplexStream, window: u32) {
    let mut conn = h2::server::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(io)
        .await
        .expect("server handshake");
    let (req, mut respond) = conn.accept().await.expect("a request").expect("a stream");
    tokio::spawn(async move { poll_fn(|cx| conn.poll_closed(cx)).await });
    let mut body = req.into_body();
    let mut n = 0;
    while let Some(piece) = body.data().await {
        let piece = piece.expect("a body piece");
        n += piece.len();
        body.flow_control()
            .release_capacity(piece.len())
            .expect("release");
    }
    let head = Response::builder().status(200).body(()).expect("head");
    let mut send = respond.send_response(head, false).expect("answer");
    send.send_data(Bytes::from(n.to_string()), false)
        .expect("data");
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    send.send_trailers(trailers).expect("trailers");
}

#[tokio::test]
async fn a_body_larger_than_the_stream_window_goes_whole_and_the_trailers_come_back() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(counting_upstream(server, 1000));
    let sender = handshake(client, SETTINGS).await.expect("handshake");
    // 2400 bytes through a 1000-byte window: the first piece goes with the
    // head, the others wait for the upstream to read and give window back.
    let req = request(&[&[b'x'; 800], &[b'y'; 800], &[b'z'; 800]]);
    let resp = match sender.clone().send(req).await {
        Ok(r) => r,
        Err(f) => panic!("exchange failed: {}", f.error),
    };
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.expect("body");
    let trailers = got.trailers().cloned().expect("trailers");
    assert_eq!(got.to_bytes(), Bytes::from_static(b"2400"));
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert!(!sender.is_closed());
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_stops_answering_pings_is_closed_after_interval_and_timeout() {
    // The server's end is held open and never read: no pong ever comes.
    let (client, _silent) = tokio::io::duplex(64 * 1024);
    let sender = handshake(client, SETTINGS).await.expect("handshake");
    let start = Instant::now();
    while !sender.is_closed() {
        assert!(start.elapsed() < Duration::from_secs(120), "never closed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took <= Duration::from_secs(31),
        "closed after {took:?}, not 20 s + 10 s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_answers_pings_stays_open() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut conn = h2::server::handshake(server)
            .await
            .expect("server handshake");
        while let Some(Ok(_)) = conn.accept().await {}
    });
    let sender = handshake(client, SETTINGS).await.expect("handshake");
    // Five pings' worth of time, every one answered.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!sender.is_closed());
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_for_a_closed_connection_comes_back_unsent() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let sender = handshake(client, SETTINGS).await.expect("handshake");
    drop(server);
    let start = Instant::now();
    while !sender.is_closed() {
        assert!(start.elapsed() < Duration::from_secs(5), "never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match sender.send(request(&[b"hello"])).await {
        Ok(_) => panic!("a closed connection answered"),
        Err(f) => {
            let unsent = f.unsent.expect("the request, unsent, for a retry");
            assert_eq!(unsent.uri().path(), "/bench.Bench/Call");
        }
    }
}
