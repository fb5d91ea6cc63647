//! Writing what the command line prints. A reader that goes away early
//! (`switchyard ctl status | head -1`, `check ... | true`) is the reader's
//! choice, not a failure: `println!` would panic on the broken pipe (with
//! `panic = "abort"`, a core dump and exit 134). Here a closed pipe is an
//! ordinary [`io::Error`] that callers recognise with [`reader_gone`].

use std::io::{self, Write};

/// Write `text` to stdout and flush it.
pub fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Write `text` to stderr. Stderr is where failures are reported, so when
/// it fails too there is nowhere left to report that: the error is dropped.
pub fn err(text: &str) {
    let mut stderr = io::stderr().lock();
    if stderr.write_all(text.as_bytes()).is_err() {
        return;
    }
    if stderr.flush().is_err() {
        // As above: nowhere left to say it.
    }
}

/// Did the write fail because the reader closed the pipe? The output is
/// then simply cut short, and the command's own verdict stands.
pub fn reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}
