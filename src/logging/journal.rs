//! journald priorities for log lines written to stderr.
//!
//! Under systemd, stderr is usually a stream to journald, which stores every line at the
//! unit's default priority (info) unless the line starts with a syslog priority prefix `<N>`
//! (`SyslogLevelPrefix=yes`, the default; sd-daemon(3)). systemd says so in the environment:
//! `JOURNAL_STREAM=<device>:<inode>` of the stream it connected (systemd.exec(5), "The
//! JOURNAL_STREAM environment variable"); a process whose stderr has that device and inode
//! writes to the journal. [`stderr_is_journal`] checks it, and [`JournalStderr`] then starts
//! each line with the priority of its event: `<3>` ERROR, `<4>` WARN, `<6>` INFO, `<7>`
//! DEBUG and TRACE, so `journalctl -p warning` shows WARN and worse. The line itself (text or
//! JSON) is unchanged; journald strips the prefix.
//!
//! Why a prefix and not `tracing-journald` (native journal protocol on
//! `/run/systemd/journal/socket`): the prefix keeps one output (stderr, in order with anything
//! else written there, also when the journal socket is unreachable, e.g. in a container or a
//! chroot), keeps the operator's `[log] format`, and needs no dependency.
//!
//! This module does not decide the format or the filter ([`super::init`] does) and does not
//! talk to journald.

use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// `JOURNAL_STREAM`'s value: `<device>:<inode>`, both decimal.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Is stderr the journal stream systemd connected (`JOURNAL_STREAM` names its device and
/// inode)? False when the variable is absent or malformed, or stderr was redirected since.
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .as_deref()
        .and_then(parse_journal_stream)
    else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority prefix of a level (RFC 5424 severities: 3 err, 4 warning, 6 info,
/// 7 debug).
pub fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        Level::DEBUG | Level::TRACE => b"<7>",
    }
}

/// `text` with `prefix` at the start of each of its lines (a multi-line event gets the
/// prefix on every line, as journald reads each line as an entry).
pub fn prefix_lines(prefix: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + prefix.len() * 2);
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
    }
    out
}

/// A [`MakeWriter`] for stderr that prefixes each line with its event's priority.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournalStderr;

impl<'a> MakeWriter<'a> for JournalStderr {
    type Writer = PrefixedLine;

    fn make_writer(&'a self) -> Self::Writer {
        PrefixedLine::new(priority(&Level::INFO))
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        PrefixedLine::new(priority(meta.level()))
    }
}

/// One event's output: buffered, then written to stderr with one `write_all` when dropped
/// (the formatter writes a whole event, then drops its writer), so lines of concurrent events
/// do not interleave.
pub struct PrefixedLine {
    prefix: &'static [u8],
    buf: Vec<u8>,
}

impl PrefixedLine {
    fn new(prefix: &'static [u8]) -> Self {
        Self {
            prefix,
            buf: Vec::with_capacity(256),
        }
    }
}

impl Write for PrefixedLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PrefixedLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // Nowhere to report a failed write to stderr.
        let _ = io::stderr()
            .lock()
            .write_all(&prefix_lines(self.prefix, &self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_values() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(
            parse_journal_stream("64769:3407891\n"),
            Some((64769, 3_407_891))
        );
        for bad in ["", "8", "8:", ":1", "a:1", "1:b", "-1:2", "1:2:3"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn priorities() {
        assert_eq!(priority(&Level::ERROR), b"<3>");
        assert_eq!(priority(&Level::WARN), b"<4>");
        assert_eq!(priority(&Level::INFO), b"<6>");
        assert_eq!(priority(&Level::DEBUG), b"<7>");
        assert_eq!(priority(&Level::TRACE), b"<7>");
    }

    #[test]
    fn every_line_gets_the_prefix() {
        assert_eq!(prefix_lines(b"<4>", b"a line\n"), b"<4>a line\n");
        assert_eq!(
            prefix_lines(b"<3>", b"first\nsecond\n"),
            b"<3>first\n<3>second\n"
        );
        assert_eq!(prefix_lines(b"<6>", b"no newline"), b"<6>no newline");
        assert_eq!(prefix_lines(b"<6>", b""), b"");
    }
}
