//! Small I/O helpers shared by the bundle and seal readers.

use std::io::{ErrorKind, Read};

use crate::error::{into_error, Result};

/// Reads until `buf` is full or the input ends; returns the bytes read.
/// Interrupted reads are retried; our own errors travelling inside an
/// `io::Error` come back out with their codes.
pub(crate) fn read_full<R: Read + ?Sized>(input: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(into_error(e)),
        }
    }
    Ok(filled)
}
