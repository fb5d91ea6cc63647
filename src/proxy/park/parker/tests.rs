use super::*;
use crate::proxy::limits::ConnectionLimit;
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio_util::task::TaskTracker;

/// A parker on a real epoll set, whose woken connections come out of
/// `woken` (with whether a `Parker` came with them), and a loopback
/// listener to make connections to park.
struct Fixture {
    parker: Parker,
    woken: mpsc::UnboundedReceiver<(Idle<TcpStream>, bool)>,
    tracker: TaskTracker,
    stop: CancellationToken,
    limit: Arc<ConnectionLimit>,
    listener: std::net::TcpListener,
}

fn fixture() -> Fixture {
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let (tx, woken) = mpsc::unbounded_channel();
    let parker = Parker::start(&tracker, stop.clone(), move |idle, parker| {
        let _ = tx.send((idle, parker.is_some()));
    })
    .expect("a parker");
    Fixture {
        parker,
        woken,
        tracker,
        stop,
        limit: ConnectionLimit::new(10_000),
        listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    }
}

impl Fixture {
    /// A client, and its connection as the proxy would park it.
    fn connect(
        &self,
        deadline: Duration,
        replay: &[u8],
    ) -> (std::net::TcpStream, Idle<std::net::TcpStream>) {
        let client = std::net::TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (server, peer) = self.listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let idle = Idle {
            io: server,
            ip: peer.ip(),
            replay: Bytes::copy_from_slice(replay),
            deadline: Instant::now() + deadline,
            slot: self.limit.try_open().expect("a place"),
        };
        (client, idle)
    }

    /// Wait until `n` connections are parked (the parker takes them from
    /// its channel in its own task): the condition, looked at every
    /// millisecond until a 5 s deadline, failing by name. Under a paused
    /// clock the looks advance virtual time only.
    async fn parked(&self, n: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.limit.parked_now() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} parked after 5 s, not {n}",
                self.limit.parked_now()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The client's end saw the server close (FIN, nothing before it).
fn closed(client: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(client.read(&mut buf), Ok(0))
}

#[tokio::test]
async fn many_parked_connections_are_all_woken_with_what_they_had() {
    let mut f = fixture();
    let n = 300;
    let mut clients = Vec::new();
    let mut deadlines = Vec::new();
    for i in 0..n {
        let replay: &[u8] = if i == 7 { b"GET / HT" } else { b"" };
        let (client, idle) = f.connect(Duration::from_secs(60), replay);
        deadlines.push((idle.io.peer_addr().unwrap(), idle.deadline));
        f.parker.park(idle);
        clients.push(client);
    }
    f.parked(n).await;
    assert_eq!(f.limit.open(), n as usize);
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("{i:04}").as_bytes()).unwrap();
    }
    let mut seen = vec![false; n as usize];
    let mut served = Vec::new();
    for _ in 0..n {
        let (mut idle, with_parker) = tokio::time::timeout(Duration::from_secs(10), f.woken.recv())
            .await
            .expect("every parked connection woken")
            .unwrap();
        assert!(with_parker, "a woken connection can park again");
        assert!(idle.ip.is_loopback());
        let peer = idle.io.peer_addr().unwrap();
        let (_, deadline) = deadlines.iter().find(|(a, _)| *a == peer).unwrap();
        assert_eq!(idle.deadline, *deadline, "the deadline was not carried");
        let mut sent = [0u8; 4];
        idle.io.read_exact(&mut sent).await.unwrap();
        let i: usize = std::str::from_utf8(&sent).unwrap().parse().unwrap();
        let want: &[u8] = if i == 7 { b"GET / HT" } else { b"" };
        assert_eq!(&idle.replay[..], want, "connection {i}'s unread bytes");
        assert!(!seen[i], "connection {i} woken twice");
        seen[i] = true;
        served.push(idle);
    }
    assert_eq!(f.limit.parked_now(), 0);
    assert_eq!(
        f.limit.open(),
        n as usize,
        "woken connections keep their place"
    );
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_is_closed_at_its_deadline() {
    let f = fixture();
    let (mut soon, idle) = f.connect(Duration::from_secs(5), b"");
    f.parker.park(idle);
    let (mut later, idle) = f.connect(Duration::from_secs(60), b"");
    f.parker.park(idle);
    f.parked(2).await;
    // The clock is paused: these sleeps advance virtual time to just
    // before, then just past, the 5 s deadline; nothing waits for real.
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert_eq!(f.limit.parked_now(), 2, "closed before its deadline");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.limit.parked_now(), 1);
    assert_eq!(f.limit.open(), 1, "the closed connection's place was kept");
    assert!(closed(&mut soon));
    later.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        later.read(&mut buf).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the other connection was closed too"
    );
}

#[tokio::test]
async fn shutdown_closes_every_parked_connection_and_ends_the_parker() {
    let f = fixture();
    let mut clients = Vec::new();
    for _ in 0..50 {
        let (client, idle) = f.connect(Duration::from_secs(60), b"");
        f.parker.park(idle);
        clients.push(client);
    }
    f.parked(50).await;
    f.stop.cancel();
    f.tracker.close();
    tokio::time::timeout(Duration::from_secs(5), f.tracker.wait())
        .await
        .expect("the parker ended");
    for c in &mut clients {
        assert!(closed(c), "a parked connection stayed open");
    }
    assert_eq!((f.limit.open(), f.limit.parked_now()), (0, 0));
    // Parked after the shutdown: closed at once.
    assert!(f.parker.is_closed());
    let (mut late, idle) = f.connect(Duration::from_secs(60), b"");
    f.parker.park(idle);
    assert!(closed(&mut late));
    assert_eq!(f.limit.open(), 0);
}

#[tokio::test]
async fn the_deadline_heap_stays_bounded_by_the_parked_connections() {
    let f = fixture();
    let poll = mio::Poll::new().unwrap();
    let mut set = ParkedSet::new(poll.registry().try_clone().unwrap());
    let (_client, mut idle) = f.connect(Duration::from_secs(60), b"");
    let mut key = 0;
    for round in 0..1_000 {
        set.insert(idle);
        assert_eq!(set.len(), 1);
        assert!(
            set.deadlines.len() <= 2 + 64 + 1,
            "{} deadlines for one connection after {round} parks",
            set.deadlines.len()
        );
        key = set.entries.iter().next().unwrap().0;
        let woken = set.wake(key).expect("the parked connection");
        idle = Idle {
            io: woken.io.into_std().unwrap(),
            ip: woken.ip,
            replay: woken.replay,
            deadline: woken.deadline,
            slot: woken.slot,
        };
    }
    assert_eq!(set.len(), 0);
    assert!(set.wake(key).is_none(), "woken twice");
    // The stale deadlines close nothing.
    set.insert(idle);
    set.expire(Instant::now() + Duration::from_secs(59));
    assert_eq!(set.len(), 1);
    set.expire(Instant::now() + Duration::from_secs(61));
    assert_eq!(set.len(), 0);
}
