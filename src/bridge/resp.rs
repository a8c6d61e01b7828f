//! A small blocking RESP2 connection: the handshake (`AUTH`, `SELECT`,
//! `PING`), pipelined writes that report how far they got, and replies and
//! pushes read without losing a partly received frame to a read timeout.
//!
//! The bridge speaks RESP2 itself rather than through redis-rs's
//! connection so that it knows, for every pipelined `PUBLISH`, whether its
//! bytes left the process and whether Redis answered (the `lost` and
//! `unknown` counts depend on it), and so that received payloads are
//! slices of the read buffer instead of fresh copies. redis-rs parses the
//! URL.
//!
//! With the `tls` feature the connection may be TLS ([`super::tls`]): the
//! same code reads and writes either kind of [`Stream`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::ConnectError;

/// Where and how to connect: what the URL said.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) db: i64,
    /// `rediss://`: the TLS settings.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Target {
    /// `host:port`, for messages.
    pub(super) fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One RESP2 value. Bulk strings and errors are slices of the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Option<Vec<Frame>>),
}

impl Frame {
    pub(super) fn bulk(&self) -> Option<&Bytes> {
        match self {
            Frame::Bulk(Some(bytes)) | Frame::Simple(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// Why a read returned nothing.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Nothing complete arrived in time; the connection is still usable.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// Bytes that are not RESP.
    Protocol(String),
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("timed out waiting for a reply"),
            ReadError::Closed => f.write_str("the server closed the connection"),
            ReadError::Protocol(what) => write!(f, "not a Redis reply: {what}"),
            ReadError::Io(error) => write!(f, "{error}"),
        }
    }
}

/// Timeouts of one connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// For the TCP connect and for each handshake reply.
    pub(super) connect: Duration,
    /// For a write to make progress.
    pub(super) write: Duration,
}

/// The byte stream under a connection: plain TCP, or TLS over TCP. The
/// timeouts are set on the TCP socket either way.
pub(super) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<super::tls::TlsStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// Reads some bytes; `Ok(0)` once the server has closed.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => super::tls::read(tls, buf),
        }
    }

    /// Writes `data`; returns how many bytes left the process (and can
    /// reach the server) and the error that stopped it, if any.
    fn write(&mut self, data: &[u8]) -> (usize, io::Result<()>) {
        match self {
            Stream::Plain(tcp) => {
                let mut done = 0;
                while done < data.len() {
                    match tcp.write(&data[done..]) {
                        Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
                        Ok(n) => done += n,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return (done, Err(error)),
                    }
                }
                (done, Ok(()))
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => super::tls::write(tls, data),
        }
    }

    /// Whether anything arrived (or the server closed), without waiting;
    /// the socket is non-blocking meanwhile.
    fn anything_arrived(&mut self) -> bool {
        if self.tcp().set_nonblocking(true).is_err() {
            return true;
        }
        let arrived = match self {
            Stream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                match tcp.peek(&mut probe) {
                    Ok(_) => true,
                    Err(error) => !is_timeout(&error),
                }
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => super::tls::anything_arrived(tls),
        };
        arrived || self.tcp().set_nonblocking(false).is_err()
    }
}

/// A connected, authenticated RESP2 connection.
pub(super) struct Conn {
    stream: Stream,
    input: BytesMut,
    read_timeout: Option<Duration>,
    addr: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    /// Connects, authenticates, selects the database and checks with `PING`
    /// that a Redis server answers.
    pub(super) fn open(target: &Target, timeouts: Timeouts) -> Result<Conn, ConnectError> {
        let addr = target.addr();
        let stream = connect(target, timeouts)?;
        let io = |error: io::Error| ConnectError::Io {
            addr: addr.clone(),
            detail: error.to_string(),
        };
        // The handshake leaves the connect timeout as the read timeout.
        #[cfg(feature = "tls")]
        let (stream, read_timeout) = match &target.tls {
            Some(config) => {
                let tls = super::tls::handshake(config, &target.host, stream, &addr, timeouts)?;
                (Stream::Tls(Box::new(tls)), Some(timeouts.connect))
            }
            None => (Stream::Plain(stream), None),
        };
        #[cfg(not(feature = "tls"))]
        let (stream, read_timeout) = (Stream::Plain(stream), None);
        let plain = matches!(stream, Stream::Plain(_));
        let mut conn = Conn {
            stream,
            input: BytesMut::with_capacity(READ_CHUNK),
            read_timeout,
            addr: addr.clone(),
        };
        let mut hello = Vec::new();
        match (&target.username, &target.password) {
            (Some(user), Some(password)) => {
                encode(&mut hello, &[b"AUTH", user.as_bytes(), password.as_bytes()]);
            }
            (None, Some(password)) => encode(&mut hello, &[b"AUTH", password.as_bytes()]),
            _ => {}
        }
        if target.db != 0 {
            encode(&mut hello, &[b"SELECT", target.db.to_string().as_bytes()]);
        }
        encode(&mut hello, &[b"PING"]);
        let (_, written) = conn.write(&hello);
        written.map_err(io)?;
        let deadline = Instant::now() + timeouts.connect;
        let replies = usize::from(target.password.is_some()) + usize::from(target.db != 0) + 1;
        let mut first_error = None;
        for _ in 0..replies {
            match conn.read_until(deadline) {
                Ok(Frame::Error(text)) => {
                    first_error.get_or_insert(String::from_utf8_lossy(&text).into_owned());
                }
                Ok(_) => {}
                Err(ReadError::Timeout) => {
                    return Err(ConnectError::NoAnswer {
                        addr,
                        waited: timeouts.connect,
                    })
                }
                Err(ReadError::Protocol(got)) => return Err(ConnectError::NotRedis { addr, got }),
                Err(ReadError::Closed) => {
                    return Err(ConnectError::Io {
                        addr,
                        detail: format!("closed during the handshake{}", tls_hint(plain)),
                    })
                }
                Err(ReadError::Io(error))
                    if plain && error.kind() == io::ErrorKind::ConnectionReset =>
                {
                    return Err(ConnectError::Io {
                        addr,
                        detail: format!("{error} during the handshake{}", tls_hint(true)),
                    })
                }
                Err(ReadError::Io(error)) => return Err(io(error)),
            }
        }
        match first_error {
            None => Ok(conn),
            Some(text) if is_auth_error(&text) => Err(ConnectError::Auth { addr, detail: text }),
            Some(text) => Err(ConnectError::Rejected { addr, reply: text }),
        }
    }

    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    /// Writes `data`; returns how many bytes left the process (all of them
    /// on success) and the error that stopped it, if any.
    ///
    /// Over TLS, bytes count as gone once the whole TLS record holding
    /// them did: the server cannot read a record it got only part of.
    pub(super) fn write(&mut self, data: &[u8]) -> (usize, io::Result<()>) {
        self.stream.write(data)
    }

    /// The next complete frame, waiting at most `timeout` for more bytes;
    /// a partly received frame stays buffered across a timeout.
    pub(super) fn read(&mut self, timeout: Duration) -> Result<Frame, ReadError> {
        if let Some(frame) = self.parse()? {
            return Ok(frame);
        }
        self.read_until(Instant::now() + timeout)
    }

    /// Waits up to `timeout` until a complete frame is buffered and
    /// returns its length; see [`front`](Conn::front),
    /// [`consume`](Conn::consume) and [`take`](Conn::take).
    pub(super) fn next_len(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        if let Some(len) = frame_len(&self.input, 0, 0)? {
            return Ok(len);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            self.fill(left)?;
            if let Some(len) = frame_len(&self.input, 0, 0)? {
                return Ok(len);
            }
        }
    }

    /// The first `len` buffered bytes.
    pub(super) fn front(&self, len: usize) -> &[u8] {
        &self.input[..len]
    }

    /// Drops the first `len` buffered bytes.
    pub(super) fn consume(&mut self, len: usize) {
        let _ = self.input.split_to(len);
    }

    /// Takes the first `len` buffered bytes out, shared with the buffer.
    pub(super) fn take(&mut self, len: usize) -> Bytes {
        self.input.split_to(len).freeze()
    }

    /// [`read`](Conn::read) with a deadline.
    pub(super) fn read_until(&mut self, deadline: Instant) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            self.fill(left)?;
        }
    }

    /// Whether the server has closed the connection (or anything else
    /// arrived that nobody asked for), checked without waiting; used
    /// before writing to a connection that was idle, so that publishes are
    /// not written into a connection already known to be dead.
    pub(super) fn closed_by_peer(&mut self) -> bool {
        !self.input.is_empty() || self.stream.anything_arrived()
    }

    fn fill(&mut self, timeout: Duration) -> Result<(), ReadError> {
        // Whole milliseconds: setting the timeout is a system call, skip it
        // when it has not changed.
        let timeout =
            Duration::from_millis(timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u64);
        if self.read_timeout != Some(timeout) {
            self.stream
                .tcp()
                .set_read_timeout(Some(timeout))
                .map_err(ReadError::Io)?;
            self.read_timeout = Some(timeout);
        }
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let read = self.stream.read(&mut self.input[start..]);
        match read {
            Ok(0) => {
                self.input.truncate(start);
                Err(ReadError::Closed)
            }
            Ok(n) => {
                self.input.truncate(start + n);
                Ok(())
            }
            // Over TLS: the server closed without saying so (no
            // `close_notify`); closed all the same.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                self.input.truncate(start);
                Err(ReadError::Closed)
            }
            Err(error) => {
                self.input.truncate(start);
                if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted {
                    Err(ReadError::Timeout)
                } else {
                    Err(ReadError::Io(error))
                }
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>, ReadError> {
        let Some(len) = frame_len(&self.input, 0, 0)? else {
            return Ok(None);
        };
        let bytes = self.input.split_to(len).freeze();
        let (frame, _) = decode(&bytes, 0);
        Ok(Some(frame))
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub(super) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `<kind><n>\r\n`.
pub(super) fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// A TCP connection to the target, with `TCP_NODELAY` and the write
/// timeout.
fn connect(target: &Target, timeouts: Timeouts) -> Result<TcpStream, ConnectError> {
    let addr = target.addr();
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|error| ConnectError::UnknownHost {
            host: target.host.clone(),
            detail: error.to_string(),
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for socket in &addrs {
        match TcpStream::connect_timeout(socket, timeouts.connect) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last = Some(error),
        }
    }
    let Some(stream) = stream else {
        return Err(match last {
            Some(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                ConnectError::Refused { addr }
            }
            Some(error) if is_timeout(&error) => ConnectError::NoAnswer {
                addr,
                waited: timeouts.connect,
            },
            Some(error) => ConnectError::Io {
                addr,
                detail: error.to_string(),
            },
            None => ConnectError::UnknownHost {
                host: target.host.clone(),
                detail: "no address".to_owned(),
            },
        });
    };
    let io = |error: io::Error| ConnectError::Io {
        addr: addr.clone(),
        detail: error.to_string(),
    };
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_write_timeout(Some(timeouts.write.max(Duration::from_millis(1))))
        .map_err(io)?;
    Ok(stream)
}

/// For a plain connection cut during the handshake: the likely reason.
fn tls_hint(plain: bool) -> &'static str {
    if plain {
        " (if this is a TLS port, use a rediss:// URL)"
    } else {
        ""
    }
}

pub(super) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_auth_error(text: &str) -> bool {
    ["NOAUTH", "WRONGPASS", "NOPERM"]
        .iter()
        .any(|code| text.starts_with(code))
        || text.contains("invalid password")
        || text.contains("without any password configured")
        || text.contains("invalid username-password")
}

/// Longest nesting accepted in a reply.
const MAX_DEPTH: usize = 16;

/// The length of the complete frame at `at`, `None` if more bytes are
/// needed, an error for bytes that are not RESP2.
fn frame_len(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ReadError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') || depth > MAX_DEPTH {
        return Err(ReadError::Protocol(show(&buf[at..])));
    }
    let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
        if buf.len() - at > 64 * 1024 {
            return Err(ReadError::Protocol(show(&buf[at..])));
        }
        return Ok(None);
    };
    let line = &buf[at + 1..at + eol];
    let after = at + eol + 2;
    match kind {
        b'+' | b'-' => Ok(Some(after - at)),
        b':' => parse_int(line)
            .map(|_| Some(after - at))
            .ok_or_else(|| ReadError::Protocol(show(&buf[at..]))),
        b'$' => {
            let n = parse_int(line).ok_or_else(|| ReadError::Protocol(show(&buf[at..])))?;
            let Ok(n) = usize::try_from(n) else {
                return Ok(Some(after - at));
            };
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            if &buf[after + n..after + n + 2] != b"\r\n" {
                return Err(ReadError::Protocol(show(&buf[at..])));
            }
            Ok(Some(after + n + 2 - at))
        }
        _ => {
            let n = parse_int(line).ok_or_else(|| ReadError::Protocol(show(&buf[at..])))?;
            let Ok(n) = usize::try_from(n) else {
                return Ok(Some(after - at));
            };
            let mut end = after;
            for _ in 0..n {
                match frame_len(buf, end, depth + 1)? {
                    Some(len) => end += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(end - at))
        }
    }
}

/// The ranges of the items of a complete frame that is an array of bulk
/// strings (a Pub/Sub push), without copying; `None` for anything else.
pub(super) fn bulk_items(frame: &[u8]) -> Option<smallvec::SmallVec<[std::ops::Range<usize>; 4]>> {
    let line_end = |at: usize| {
        frame[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| at + p)
    };
    if frame.first() != Some(&b'*') {
        return None;
    }
    let eol = line_end(0)?;
    let n = usize::try_from(parse_int(&frame[1..eol])?).ok()?;
    let mut items = smallvec::SmallVec::new();
    let mut at = eol + 2;
    for _ in 0..n {
        if frame.get(at) != Some(&b'$') {
            return None;
        }
        let eol = line_end(at)?;
        let len = usize::try_from(parse_int(&frame[at + 1..eol])?).ok()?;
        items.push(eol + 2..eol + 2 + len);
        at = eol + 2 + len + 2;
    }
    Some(items)
}

/// Decodes the complete frame at `at` (checked by `frame_len`).
fn decode(bytes: &Bytes, at: usize) -> (Frame, usize) {
    let eol = at
        + bytes[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a checked frame");
    let line = &bytes[at + 1..eol];
    let after = eol + 2;
    match bytes[at] {
        b'+' => (Frame::Simple(bytes.slice(at + 1..eol)), after),
        b'-' => (Frame::Error(bytes.slice(at + 1..eol)), after),
        b':' => (Frame::Int(parse_int(line).unwrap_or(0)), after),
        b'$' => match usize::try_from(parse_int(line).unwrap_or(-1)) {
            Ok(n) => (
                Frame::Bulk(Some(bytes.slice(after..after + n))),
                after + n + 2,
            ),
            Err(_) => (Frame::Bulk(None), after),
        },
        _ => match usize::try_from(parse_int(line).unwrap_or(-1)) {
            Ok(n) => {
                let mut items = Vec::with_capacity(n);
                let mut next = after;
                for _ in 0..n {
                    let (item, end) = decode(bytes, next);
                    items.push(item);
                    next = end;
                }
                (Frame::Array(Some(items)), next)
            }
            Err(_) => (Frame::Array(None), after),
        },
    }
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The start of some bytes, printable, for an error message.
fn show(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(40)];
    let mut text: String = head
        .iter()
        .map(|&b| match b {
            b' '..=b'~' => char::from(b).to_string(),
            b'\r' => "\\r".to_owned(),
            b'\n' => "\\n".to_owned(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    if bytes.len() > head.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_parsed_only_when_complete() {
        let full = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n:7\r\n";
        for cut in 0..full.len() - 4 {
            assert!(frame_len(&full[..cut], 0, 0).unwrap().is_none(), "{cut}");
        }
        assert_eq!(frame_len(full, 0, 0).unwrap(), Some(full.len() - 4));
        let bytes = Bytes::from_static(full);
        let (frame, end) = decode(&bytes, 0);
        assert_eq!(end, full.len() - 4);
        let Frame::Array(Some(items)) = frame else {
            panic!("{frame:?}")
        };
        assert_eq!(items[2].bulk().unwrap(), &b"hi"[..]);
        assert_eq!(decode(&bytes, end).0, Frame::Int(7));
        assert!(frame_len(b"HTTP/1.1 400 Bad Request\r\n", 0, 0).is_err());
    }

    #[test]
    fn commands_are_encoded_as_bulk_arrays() {
        let mut out = Vec::new();
        encode(&mut out, &[b"PUBLISH", b"c", b""]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$0\r\n\r\n");
        let mut n = Vec::new();
        header(&mut n, b':', 1_234_567_890);
        assert_eq!(n, b":1234567890\r\n");
    }
}
