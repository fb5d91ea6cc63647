//! A fault-injecting TCP proxy between switchyard and a test upstream, on
//! 127.0.0.1:0. It forwards bytes both ways and, depending on its current
//! [`Fault`] (changeable at any time), delays, trickles, resets, closes,
//! answers garbage or never answers. It stops when dropped.
//!
//! Everything switchyard sent through it is recorded, so tests can check
//! what an upstream would have read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the fault proxy does to the connections through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward faithfully.
    Pass,
    /// Hold every chunk of the answer this long before passing it on.
    Latency(Duration),
    /// Pass the first `after` bytes of the answer, then reset both sides (RST).
    Reset { after: usize },
    /// Close the connection right after the first answer: the pooled
    /// keep-alive connection dies while idle, just before it is reused.
    CloseIdle,
    /// Pass the first exchange; when a second request arrives on the same
    /// connection, close it without passing the request on or answering.
    CloseOnReuse,
    /// Read the request, answer bytes that are not HTTP, close.
    Malformed,
    /// Accept and read, never answer, never close.
    Blackhole,
    /// Pass the answer one byte at a time with this pause between bytes.
    Trickle(Duration),
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    target: SocketAddr,
    fault: Mutex<Fault>,
    /// Connections open through the proxy now, and ever.
    open: AtomicUsize,
    accepted: AtomicUsize,
    /// Every byte sent towards the upstream, in order, per connection.
    sent: Mutex<Vec<Vec<u8>>>,
    stop: CancellationToken,
}

struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FaultProxy {
    pub async fn start(target: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            target,
            fault: Mutex::new(fault),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    _ = st.stop.cancelled() => break,
                };
                st.accepted.fetch_add(1, Ordering::Relaxed);
                st.open.fetch_add(1, Ordering::Relaxed);
                let guard = OpenGuard(st.clone());
                let st = st.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = connection(stream, &st) => {}
                        _ = st.stop.cancelled() => {}
                    }
                    drop(guard);
                });
            }
        });
        FaultProxy { addr, state }
    }

    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Connections open through the proxy now.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// What switchyard sent towards the upstream, one entry per connection.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.state.sent.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        self.state.stop.cancel();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.cancel();
    }
}

impl State {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    fn record(&self, conn: usize, bytes: &[u8]) {
        self.sent.lock().unwrap()[conn].extend_from_slice(bytes);
    }
}

const MALFORMED: &[u8] = b"HTTP/1.1 2OO NOT OK\r\n\x00\x01garbage\r\n\r\n";

async fn connection(mut client: TcpStream, st: &Arc<State>) {
    let conn = {
        let mut sent = st.sent.lock().unwrap();
        sent.push(Vec::new());
        sent.len() - 1
    };
    let mut buf = vec![0u8; 16 * 1024];
    let Ok(mut upstream) = TcpStream::connect(st.target).await else {
        return;
    };
    let mut ubuf = vec![0u8; 16 * 1024];
    let mut answered = 0usize;
    loop {
        tokio::select! {
            r = client.read(&mut buf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                match st.fault() {
                    Fault::CloseOnReuse if answered > 0 => return,
                    Fault::Malformed => {
                        st.record(conn, &buf[..n]);
                        let _answered = client.write_all(MALFORMED).await;
                        return;
                    }
                    Fault::Blackhole => {
                        st.record(conn, &buf[..n]);
                        // Never answer, never close: read on until the stop.
                        while let Ok(n) = client.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                        st.stop.cancelled().await;
                        return;
                    }
                    _ => {}
                }
                st.record(conn, &buf[..n]);
                if upstream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            r = upstream.read(&mut ubuf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                let chunk = &ubuf[..n];
                match st.fault() {
                    Fault::Latency(d) => {
                        tokio::time::sleep(d).await;
                        if client.write_all(chunk).await.is_err() { return; }
                    }
                    Fault::Trickle(d) => {
                        for b in chunk {
                            if client.write_all(std::slice::from_ref(b)).await.is_err() { return; }
                            tokio::time::sleep(d).await;
                        }
                    }
                    Fault::Reset { after } => {
                        let left = after.saturating_sub(answered).min(n);
                        if client.write_all(&chunk[..left]).await.is_err() { return; }
                        if answered + n >= after {
                            let _flushed = client.flush().await;
                            let _rst = client.set_zero_linger();
                            let _rst = upstream.set_zero_linger();
                            return;
                        }
                    }
                    Fault::CloseIdle => {
                        if client.write_all(chunk).await.is_err() { return; }
                        if ends_answer(chunk) {
                            return;
                        }
                    }
                    _ => {
                        if client.write_all(chunk).await.is_err() { return; }
                    }
                }
                answered += n;
            }
        }
    }
}

/// Whether `chunk` ends an answer of the test upstream: a fixed-length body
/// after its head, or the last chunk of a chunked one. Good enough for the
/// short answers the fault tests send.
fn ends_answer(chunk: &[u8]) -> bool {
    chunk.ends_with(b"0\r\n\r\n")
        || chunk
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|head_end| {
                let head = String::from_utf8_lossy(&chunk[..head_end]).to_ascii_lowercase();
                head.lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .is_some_and(|len| chunk.len() >= head_end + 4 + len)
            })
}
