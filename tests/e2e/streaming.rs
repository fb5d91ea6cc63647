//! Bodies stream through the proxy: a 10 MB upload and a 10 MB download do
//! not grow the proxy's memory by their size.

use crate::support::process::ProxyProcess;
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;

const SIZE: usize = 10 * 1024 * 1024;

#[tokio::test]
async fn ten_megabyte_bodies_stream_without_buffering() {
    let up = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{a}\"]\n  green:\n    endpoints: [\"{a}\"]\nstate_file: null\n",
        a = up.addr
    );
    let p = ProxyProcess::start(dir.path(), &yaml).await;
    let c = client();
    let url = |path: &str| format!("http://{}{}", p.proxy, path);
    // Warm up: connections, buffers, allocator arenas.
    assert_eq!(get(&c, url("/")).await.status, 200);
    let baseline = p.status_kib("VmRSS:");

    // Upload, generated chunk by chunk by a body that is never whole in memory.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let frames = futures_util::stream::iter(
        (0..SIZE / chunk.len()).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
    );
    let upload_client: hyper_util::client::legacy::Client<_, StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(url("/upload"))
        .body(StreamBody::new(frames))
        .unwrap();
    let a = read(upload_client.request(req).await.unwrap()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.text(),
        SIZE.to_string(),
        "the upstream did not get every byte"
    );

    // Download, counted frame by frame.
    let resp = c
        .get(url(&format!("/bytes/{SIZE}")).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(n, SIZE);

    let peak = p.status_kib("VmHWM:");
    let growth_kib = peak.saturating_sub(baseline);
    eprintln!("proxy RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth_kib} KiB");
    assert!(
        growth_kib < (SIZE / 1024) as u64 / 2,
        "proxy memory grew by {growth_kib} KiB while streaming {} KiB",
        SIZE / 1024
    );
}
