//! The random draws of the route decision, behind a small trait so that
//! tests choose them: the weighted pick of a pool and the two endpoints of
//! a power-of-two-choices pick.
//!
//! Requests draw from [`ThreadDraw`] (fastrand's thread-local generator: no
//! lock, no allocation). Nothing in `routing/` draws a random number any
//! other way on the request path.

/// A source of uniform random numbers.
pub trait Draw {
    /// A number drawn uniformly from `0..n`; `n` is never 0.
    fn below(&mut self, n: usize) -> usize;
}

/// fastrand's generator of the current thread: what requests use.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadDraw;

impl Draw for ThreadDraw {
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        fastrand::usize(0..n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_draws_stay_below_the_bound() {
        let mut d = ThreadDraw;
        assert!((0..1000).all(|_| d.below(3) < 3));
        assert_eq!(d.below(1), 0);
    }
}
