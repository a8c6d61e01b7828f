//! TLS for the bridge (cargo feature `tls`, `rediss://` URLs): the rustls
//! client settings, the handshake, and reads and writes that keep the
//! bridge's accounting exact.
//!
//! The certificate roots are Mozilla's (compiled in from `webpki-roots`,
//! nothing read from the system) unless turned off, plus the CA
//! certificates given to [`BridgeBuilder::tls_ca_pem`](super::BridgeBuilder::tls_ca_pem)
//! and [`tls_ca_file`](super::BridgeBuilder::tls_ca_file). The crypto is
//! rustls's `ring` provider, chosen here rather than through the process
//! default, so that another crate's choice changes nothing.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::resp::{is_timeout, Timeouts};
use super::ConnectError;

/// A TLS connection over TCP.
pub(super) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The most plaintext bytes in one TLS record; each write hands rustls at
/// most this much, so that it becomes exactly one record.
const RECORD: usize = 16 * 1024;

/// A CA certificate to trust, as given to the builder.
#[derive(Clone, Debug)]
pub(super) enum Ca {
    Pem(Vec<u8>),
    File(PathBuf),
}

/// The builder's TLS options.
#[derive(Clone, Debug)]
pub(super) struct Options {
    pub(super) cas: Vec<Ca>,
    pub(super) webpki_roots: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cas: Vec::new(),
            webpki_roots: true,
        }
    }
}

/// The client settings for these options; the error says what is wrong
/// with them.
pub(super) fn config(options: &Options) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    if options.webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for ca in &options.cas {
        let (pem, from) = match ca {
            Ca::Pem(pem) => (std::borrow::Cow::Borrowed(pem), "the CA PEM".to_owned()),
            Ca::File(path) => {
                let from = format!("CA file {}", path.display());
                let pem = std::fs::read(path).map_err(|error| format!("{from}: {error}"))?;
                (std::borrow::Cow::Owned(pem), from)
            }
        };
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|error| format!("{from}: {error}"))?;
            roots
                .add(cert)
                .map_err(|error| format!("{from}: not a usable CA certificate: {error}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "{from}: no certificate in it (-----BEGIN CERTIFICATE-----)"
            ));
        }
    }
    if roots.is_empty() {
        return Err(
            "no certificate roots: add a CA certificate or keep the webpki roots".to_owned(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS handshake on a connected socket, within the connect timeout;
/// the server's certificate must chain to the roots and name `host`.
pub(super) fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    mut sock: TcpStream,
    addr: &str,
    timeouts: Timeouts,
) -> Result<TlsStream, ConnectError> {
    let tls_error = |detail: String| ConnectError::Tls {
        addr: addr.to_owned(),
        detail,
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|error| tls_error(format!("{host:?} cannot name a certificate: {error}")))?;
    let mut conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|error| tls_error(error.to_string()))?;
    sock.set_read_timeout(Some(timeouts.connect))
        .map_err(|error| ConnectError::Io {
            addr: addr.to_owned(),
            detail: error.to_string(),
        })?;
    let no_answer = || ConnectError::NoAnswer {
        addr: addr.to_owned(),
        waited: timeouts.connect,
    };
    // Each socket read waits at most the connect timeout; the deadline
    // bounds a server that answers in dribs and drabs.
    let deadline = Instant::now() + timeouts.connect;
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok(_) if conn.is_handshaking() && Instant::now() >= deadline => return Err(no_answer()),
            Ok(_) => {}
            Err(error) if is_timeout(&error) => return Err(no_answer()),
            // rustls's own errors: the certificate, the protocol.
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(tls_error(format!("handshake failed: {error}")))
            }
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(tls_error(
                    "the server closed the connection during the handshake (not a TLS port?)"
                        .to_owned(),
                ))
            }
            Err(error) => {
                return Err(ConnectError::Io {
                    addr: addr.to_owned(),
                    detail: format!("{error} during the TLS handshake"),
                })
            }
        }
    }
    Ok(StreamOwned::new(conn, sock))
}

/// Reads some plaintext; `Ok(0)` once the server has closed, with or
/// without `close_notify` (RESP frames say themselves where they end).
pub(super) fn read(tls: &mut TlsStream, buf: &mut [u8]) -> io::Result<usize> {
    match tls.read(buf) {
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// Writes `data` one TLS record at a time; returns how many bytes went
/// out in whole records, and the error that stopped it, if any. A record
/// only partly written is never read by the server: its bytes are not
/// counted, as on a plain connection the bytes never written are not.
pub(super) fn write(tls: &mut TlsStream, data: &[u8]) -> (usize, io::Result<()>) {
    if let Err(error) = flush(tls) {
        return (0, Err(error));
    }
    let mut done = 0;
    while done < data.len() {
        let end = data.len().min(done + RECORD);
        let taken = match tls.conn.writer().write(&data[done..end]) {
            Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
            Ok(taken) => taken,
            Err(error) => return (done, Err(error)),
        };
        if let Err(error) = flush(tls) {
            return (done, Err(error));
        }
        done += taken;
    }
    (done, Ok(()))
}

/// Writes out every TLS byte rustls holds.
fn flush(tls: &mut TlsStream) -> io::Result<()> {
    while tls.conn.wants_write() {
        match tls.conn.write_tls(&mut tls.sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Whether plaintext arrived, the server closed or the connection failed,
/// on a socket that does not block. TLS messages that carry no data (the
/// session tickets a server sends after the handshake) are taken in.
pub(super) fn anything_arrived(tls: &mut TlsStream) -> bool {
    loop {
        match tls.conn.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                return true
            }
            Ok(_) => {}
            Err(_) => return true,
        }
        match tls.conn.read_tls(&mut tls.sock) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return !is_timeout(&error),
        }
    }
}
