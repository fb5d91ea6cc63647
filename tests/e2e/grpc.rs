//! HTTP/2 upstreams (`protocol: h2`): gRPC unary and server-streaming calls
//! pass through with their trailers, and trailers cross both ways.
//!
//! The gRPC server is tonic's generic `Grpc` handler with a hand-written
//! prost message: no .proto file, no build script, no protoc.

use crate::support::*;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

struct Echo;

impl UnaryService<Msg> for Echo {
    type Response = Msg;
    type Future = Ready<Result<tonic::Response<Msg>, Status>>;

    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let m = req.into_inner();
        ready(Ok(tonic::Response::new(Msg {
            text: format!("echo {}", m.text),
            count: m.count,
        })))
    }
}

/// Streams `count` messages; when `text` is "fail", ends with an error
/// status carrying custom metadata (sent as trailers) instead of OK.
struct Countdown;

impl ServerStreamingService<Msg> for Countdown {
    type Response = Msg;
    type ResponseStream = futures_util::stream::Iter<std::vec::IntoIter<Result<Msg, Status>>>;
    type Future = Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let m = req.into_inner();
        let mut items: Vec<Result<Msg, Status>> = (1..=m.count)
            .map(|i| {
                Ok(Msg {
                    text: format!("tick {i}"),
                    count: i,
                })
            })
            .collect();
        if m.text == "fail" {
            let mut md = MetadataMap::new();
            md.insert("x-final", "trailer-kept".parse().unwrap());
            items.push(Err(Status::with_metadata(
                Code::DataLoss,
                "stopped on purpose",
                md,
            )));
        }
        ready(Ok(tonic::Response::new(futures_util::stream::iter(items))))
    }
}

/// `/trailers`: answers with the request's trailers (plus one of its own) as
/// its trailers, and the URI and `te` it saw as headers.
async fn echo_trailers(req: http::Request<Incoming>) -> http::Response<tonic::body::Body> {
    let uri = req.uri().to_string();
    let te = req.headers().get("te").cloned();
    let got = req.into_body().collect().await.unwrap();
    let mut trailers = got.trailers().cloned().unwrap_or_default();
    trailers.insert("x-from-upstream", HeaderValue::from_static("yes"));
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ok"))),
        Ok(Frame::trailers(trailers)),
    ]);
    let mut resp = http::Response::new(tonic::body::Body::new(StreamBody::new(frames)));
    resp.headers_mut()
        .insert("x-seen-uri", uri.parse().unwrap());
    if let Some(te) = te {
        resp.headers_mut().insert("x-seen-te", te);
    }
    resp
}

async fn route(
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let codec = ProstCodec::<Msg, Msg>::default();
    Ok(match req.uri().path() {
        "/test.Echo/Unary" => Grpc::new(codec).unary(Echo, req).await,
        "/test.Echo/Countdown" => Grpc::new(codec).server_streaming(Countdown, req).await,
        _ => echo_trailers(req).await,
    })
}

/// An HTTP/2-only (prior knowledge) upstream; stops when dropped.
struct H2Upstream {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn h2_upstream() -> H2Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                _ = token.cancelled() => break,
            };
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(route));
            let token = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn => {}
                    _ = token.cancelled() => {}
                }
            });
        }
    });
    H2Upstream { addr, stop }
}

fn h2_pools_config(up: SocketAddr) -> String {
    config_yaml(&[up], &[up], "").replace("endpoints: [", "protocol: h2\n    endpoints: [")
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_calls_pass_through_an_h2_pool() {
    let up = h2_upstream().await;
    let s = start_proxy(&h2_pools_config(up.addr)).await;
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let origin = format!("http://{}", s.proxy_addrs[0]).parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(http, origin);
    let codec = ProstCodec::<Msg, Msg>::default;
    let msg = |text: &str, count| {
        tonic::Request::new(Msg {
            text: text.into(),
            count,
        })
    };

    // Unary: tonic fails a call whose grpc-status trailer is missing.
    grpc.ready().await.unwrap();
    let reply = grpc
        .unary(
            msg("hi", 7),
            PathAndQuery::from_static("/test.Echo/Unary"),
            codec(),
        )
        .await
        .expect("unary call through the proxy");
    assert_eq!(
        reply.get_ref(),
        &Msg {
            text: "echo hi".into(),
            count: 7
        }
    );

    // Server streaming to the end, with its OK status in the trailers.
    let path = || PathAndQuery::from_static("/test.Echo/Countdown");
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(msg("go", 5), path(), codec())
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.count);
    }
    assert_eq!(got, [1, 2, 3, 4, 5]);
    let trailers = stream.trailers().await.unwrap().expect("trailers arrived");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // A stream that ends in an error: code, message and custom metadata
    // all travel in the trailers, after the messages.
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(msg("fail", 2), path(), codec())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().count, 1);
    assert_eq!(stream.message().await.unwrap().unwrap().count, 2);
    let status = stream
        .message()
        .await
        .expect_err("the stream ends in an error");
    assert_eq!(status.code(), Code::DataLoss);
    assert_eq!(status.message(), "stopped on purpose");
    assert_eq!(status.metadata().get("x-final").unwrap(), "trailer-kept");
    s.shutdown().await;
}

#[tokio::test]
async fn trailers_cross_an_h2_pool_both_ways() {
    let up = h2_upstream().await;
    let s = start_proxy(&h2_pools_config(up.addr)).await;
    let tcp = tokio::net::TcpStream::connect(s.proxy_addrs[0])
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc123"));
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(trailers)),
    ]);
    let req = http::Request::post("http://app.example/trailers")
        .header("te", "trailers")
        .body(StreamBody::new(frames))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The upstream saw HTTP/2 pseudo-headers built from the client's request.
    assert_eq!(resp.headers()["x-seen-uri"], "http://app.example/trailers");
    assert_eq!(resp.headers()["x-seen-te"], "trailers");
    let body = resp.into_body().collect().await.unwrap();
    let back = body.trailers().expect("response trailers arrived").clone();
    assert_eq!(back["x-checksum"], "abc123", "request trailers were lost");
    assert_eq!(back["x-from-upstream"], "yes");
    assert_eq!(body.to_bytes(), "ok");
    s.shutdown().await;
}

/// Many unary calls at once on one client connection: their answers come
/// back from the upstream as a burst of small DATA frames (message, then
/// trailers), more than the proxy's tasks read at once. With hyper's
/// adaptive window the upstream connection started at a 64 KiB window, and
/// h2's budget of unread small DATA frames (half the connection window)
/// took the burst for a flood: GOAWAY `too_many_data_frames`, and every
/// call on that connection failed (the matrix's `grpc` cell, 16 x 32).
#[tokio::test]
async fn a_burst_of_concurrent_unary_calls_all_pass_an_h2_pool() {
    const CALLS: u32 = 600;
    let up = h2_upstream().await;
    let s = start_proxy(&h2_pools_config(up.addr)).await;
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_max_concurrent_reset_streams(CALLS as usize)
        .build_http::<tonic::body::Body>();
    let origin: http::Uri = format!("http://{}", s.proxy_addrs[0]).parse().unwrap();
    let calls = (0..CALLS).map(|i| {
        let mut grpc = tonic::client::Grpc::with_origin(http.clone(), origin.clone());
        async move {
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(Msg {
                    text: format!("call {i}"),
                    count: i,
                }),
                PathAndQuery::from_static("/test.Echo/Unary"),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await
            .map(|r| r.into_inner().count)
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {CALLS} calls failed, the first: {:?}",
        failed.len(),
        failed.first()
    );
    let counts: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(counts, (0..CALLS).collect::<Vec<_>>());
    s.shutdown().await;
}
