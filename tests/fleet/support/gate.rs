//! A TCP gate between one client and etcd on loopback: while open it
//! forwards bytes both ways; `cut` closes every connection through it and
//! refuses new ones, as a network partition of that one client would.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Gate {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
        self.open.send_replace(false);
    }
}

impl Gate {
    /// A gate to `target` (`host:port`), open.
    pub async fn new(target: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("addr");
        let (open, _) = watch::channel(true);
        let rx = open.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = rx.clone();
                if !*rx.borrow_and_update() {
                    drop(client); // refused while cut
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut a, mut b) = (client, upstream);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = rx.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Gate { addr, open, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Close every connection and refuse new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}
