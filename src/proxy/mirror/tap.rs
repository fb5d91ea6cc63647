//! Reading what an answer's body holds, for the comparison, without ever
//! holding more than [`COMPARE_CAP`] of it: [`Capture`] copies the first
//! bytes into its own buffer and, past the cap, keeps only a running
//! SHA-256 digest. It copies rather than keeping the pieces the body came
//! in: a piece is a slice of the connection's read buffer, and holding a
//! few bytes of it would hold all of it, so what a copy waiting on a slow
//! candidate holds would depend on how the answer was read, not on the cap.
//!
//! [`LiveTap`] rides on the client's response body when its request was
//! copied: it notes the live answer's status and header fields, the body's
//! pieces as they stream to the client, and hands the lot to the copy's
//! task when the body ends. It never changes, delays or fails the body: a
//! body that breaks or is dropped early just leaves the copy without a
//! live answer to compare with.

use super::compare::{Captured, COMPARE_CAP};
use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::oneshot;

/// A body's bytes up to the cap, its length, and its digest once longer.
#[derive(Default)]
pub struct Capture {
    /// Grown by doubling, never past the cap.
    head: Vec<u8>,
    len: u64,
    /// Started when the body first goes past the cap.
    digest: Option<ring::digest::Context>,
}

impl Capture {
    pub fn feed(&mut self, data: &Bytes) {
        self.len += data.len() as u64;
        if let Some(d) = &mut self.digest {
            d.update(data);
            return;
        }
        let keep = data.len().min(COMPARE_CAP - self.head.len());
        self.grow(keep);
        self.head.extend_from_slice(&data[..keep]);
        if keep < data.len() {
            // Past the cap: keep the cap's worth, digest everything.
            let mut d = ring::digest::Context::new(&ring::digest::SHA256);
            d.update(&self.head);
            d.update(&data[keep..]);
            self.digest = Some(d);
        }
    }

    /// Room for `more` bytes, doubling but never past the cap.
    fn grow(&mut self, more: usize) {
        let need = self.head.len() + more;
        if need > self.head.capacity() {
            let cap = need.max(self.head.capacity() * 2).min(COMPARE_CAP);
            self.head.reserve_exact(cap - self.head.len());
        }
    }

    /// What was read, as the comparison takes it.
    pub fn finish(self) -> Captured {
        let digest = self.digest.map(|d| {
            let mut out = [0; 32];
            out.copy_from_slice(d.finish().as_ref());
            out
        });
        Captured {
            head: Bytes::from(self.head),
            len: self.len,
            digest,
        }
    }
}

/// The live answer to a copied request, as its body ended.
pub struct LiveAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Capture,
}

/// Notes the live answer on its way to the client; see the module docs.
pub struct LiveTap {
    tx: oneshot::Sender<LiveAnswer>,
    answer: LiveAnswer,
}

impl LiveTap {
    pub fn new() -> (Box<LiveTap>, oneshot::Receiver<LiveAnswer>) {
        let (tx, rx) = oneshot::channel();
        let answer = LiveAnswer {
            status: 0,
            headers: HeaderMap::new(),
            body: Capture::default(),
        };
        (Box::new(LiveTap { tx, answer }), rx)
    }

    /// The head as the upstream sent it (before the proxy rewrote it).
    pub fn head(&mut self, status: u16, headers: &HeaderMap) {
        self.answer.status = status;
        self.answer.headers = headers.clone();
    }

    #[inline]
    pub fn feed(&mut self, data: &Bytes) {
        self.answer.body.feed(data);
    }

    /// The body ended: the answer goes to the copy's task.
    pub fn end(self: Box<Self>) {
        let LiveTap { tx, answer } = *self;
        // The copy's task may have given up waiting: nothing to do then.
        let _ignored = tx.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_body_is_kept_in_its_own_buffer() {
        let mut c = Capture::default();
        let one = Bytes::from_static(b"{\"a\":1}");
        c.feed(&one);
        let got = c.finish();
        // A copy: holding it does not hold the buffer the body came in.
        assert_ne!(got.head.as_ptr(), one.as_ptr());
        // Read whole: compared byte for byte, no digest taken.
        assert_eq!(got.digest, None);
        assert_eq!(got, Captured::whole(b"{\"a\":1}"));
        let mut c = Capture::default();
        c.feed(&Bytes::from_static(b"ab"));
        c.feed(&Bytes::new());
        c.feed(&Bytes::from_static(b"cd"));
        assert_eq!(c.finish(), Captured::whole(b"abcd"));
    }

    #[test]
    fn a_long_body_keeps_the_cap_and_digests_all_of_it() {
        let body: Vec<u8> = (0..COMPARE_CAP * 3).map(|i| (i % 251) as u8).collect();
        let mut c = Capture::default();
        for piece in body.chunks(10_000) {
            c.feed(&Bytes::copy_from_slice(piece));
        }
        assert_eq!(c.head.len(), COMPARE_CAP);
        assert_eq!(c.head.capacity(), COMPARE_CAP);
        assert_eq!(c.finish(), Captured::whole(&body));
    }
}
