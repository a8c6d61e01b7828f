//! Tests for the Redis bridge over TLS (feature `tls`, `rediss://`)
//! against a real `redis-server` listening for TLS only, with a CA and a
//! server certificate for `127.0.0.1` and `localhost` made by the `openssl`
//! command when the tests run.
//!
//! The tests are `#[ignore]`d (they need `redis-server` built with TLS and
//! `openssl`); run them with
//! `cargo test --features tls --test bridge_tls -- --include-ignored`.
//! Every wait is time-boxed, so a hang fails.

#[allow(dead_code)]
#[path = "common/redis.rs"]
mod redis_support;

#[path = "common/wait.rs"]
mod wait;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wait::{deliveries, eventually, nothing_more};

use channelcast::{Bridge, BridgeError, Broker, ConnectError, Message};
use redis_support::Server;

const PATIENCE: Duration = Duration::from_secs(10);

/// The certificates of one test, in a fresh directory removed on drop:
/// a CA, a server certificate it signed, and another CA that signed
/// nothing of this server's.
struct Pki {
    dir: PathBuf,
}

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = channelcast test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl Pki {
    /// Makes the certificates; `None` (after saying why) without
    /// `openssl`, unless `CHANNELCAST_REQUIRE_REDIS` is set.
    fn new() -> Option<Pki> {
        if Command::new("openssl").arg("version").output().is_err() {
            assert!(
                std::env::var_os("CHANNELCAST_REQUIRE_REDIS").is_none(),
                "CHANNELCAST_REQUIRE_REDIS is set but the openssl command is missing"
            );
            eprintln!("skipping: the openssl command is missing (apt-get install openssl)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "channelcast-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let pki = Pki { dir };
        std::fs::write(pki.file("openssl.cnf"), OPENSSL_CONFIG).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (ca, name) in [("ca", "channelcast test CA"), ("other-ca", "another CA")] {
            pki.openssl(&[
                "req",
                "-x509",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca",
            ])
            .args(ec)
            .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
            .args([
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ])
            .run();
        }
        pki.openssl(&["req", "-new", "-config", "openssl.cnf"])
            .args(ec)
            .args(["-nodes", "-subj", "/CN=localhost"])
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .run();
        pki.openssl(&["x509", "-req", "-in", "server.csr", "-days", "2"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "2"])
            .args(["-extfile", "openssl.cnf", "-extensions", "server"])
            .args(["-out", "server.crt"])
            .run();
        Some(pki)
    }

    fn openssl(&self, args: &[&str]) -> Command {
        let mut command = Command::new("openssl");
        command.current_dir(&self.dir).args(args);
        command
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA that signed the server's certificate.
    fn ca(&self) -> PathBuf {
        self.file("ca.crt")
    }

    /// The `redis-server` options for TLS with these certificates.
    fn server_args(&self) -> Vec<String> {
        let path = |name: &str| self.file(name).display().to_string();
        vec![
            "--tls-cert-file".to_owned(),
            path("server.crt"),
            "--tls-key-file".to_owned(),
            path("server.key"),
            "--tls-ca-cert-file".to_owned(),
            path("ca.crt"),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

trait Run {
    fn run(&mut self);
}

impl Run for Command {
    fn run(&mut self) {
        let output = self.output().expect("openssl runs");
        assert!(
            output.status.success(),
            "{self:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The certificates and a TLS-only server using them, with `extra`
/// options; `None` when either tool is missing.
fn tls_server(extra: &[&str]) -> Option<(Pki, Server)> {
    let pki = Pki::new()?;
    let mut args = pki.server_args();
    args.extend(extra.iter().map(|&a| a.to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_tls(&args)?;
    Some((pki, server))
}

fn bridged(url: &str, ca: &Path) -> (Broker, Bridge) {
    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, url)
        .channels(["chat"])
        .patterns(["news.*"])
        .shard_channels(["{room}.typing"])
        .tls_ca_file(ca)
        .start()
        .unwrap();
    assert!(bridge.wait_connected(PATIENCE), "the bridge connects");
    (broker, bridge)
}

fn payloads(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap()).into_owned())
        .collect()
}

#[test]
#[ignore = "needs redis-server with TLS and openssl"]
fn two_brokers_exchange_messages_over_tls_in_order_without_echoes() {
    let Some((pki, server)) = tls_server(&[]) else {
        return;
    };
    let (a, bridge_a) = bridged(&server.tls_url(), &pki.ca());
    let (b, bridge_b) = bridged(&server.tls_url(), &pki.ca());
    let on_a = a.subscriber();
    on_a.subscribe(["chat"]).unwrap();
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    on_b.psubscribe(["news.*"]).unwrap();
    on_b.ssubscribe(["{room}.typing"]).unwrap();

    // Payloads of many TLS records (16 KiB each) among small ones.
    let big = |i: usize| format!("a{i}:{}", "x".repeat(100_000 + i));
    let expected: Vec<String> = (0..300)
        .map(|i| if i % 50 == 7 { big(i) } else { format!("a{i}") })
        .collect();
    for payload in &expected {
        assert_eq!(a.publish("chat", payload.clone()), 1);
    }
    assert_eq!(payloads(&deliveries(&on_b, 300)), expected);
    // A's own subscriber saw each message once: locally, not via Redis.
    assert_eq!(deliveries(&on_a, 300).len(), 300);
    nothing_more(&on_a);

    a.publish("news.art", "Monet");
    let got = deliveries(&on_b, 1);
    assert_eq!(got[0].pattern().unwrap(), "news.*");
    a.spublish("{room}.typing", "alice");
    let got = deliveries(&on_b, 1);
    assert_eq!(got[0].kind(), "smessage");
    assert_eq!(got[0].payload_str(), Some("alice"));
    nothing_more(&on_b);

    // And the other way.
    b.publish("chat", "hello A");
    assert_eq!(payloads(&deliveries(&on_a, 1)), ["hello A"]);
    nothing_more(&on_a);

    assert!(bridge_a.flush(PATIENCE));
    assert!(bridge_b.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!((stats.sent, stats.lost, stats.unknown), (302, 0, 0));
    assert_eq!((stats.received, stats.missed), (1, 0));
    let stats = bridge_b.stats();
    assert_eq!((stats.sent, stats.lost, stats.unknown), (1, 0, 0));
    assert_eq!((stats.received, stats.missed), (302, 0));
    assert_eq!(bridge_a.last_error(), None);
}

#[test]
#[ignore = "needs redis-server with TLS and openssl"]
fn the_bridge_reconnects_over_tls_after_the_server_restarts() {
    let Some((pki, mut server)) = tls_server(&[]) else {
        return;
    };
    let (a, bridge_a) = bridged(&server.tls_url(), &pki.ca());
    let (b, bridge_b) = bridged(&server.tls_url(), &pki.ca());
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    a.publish("chat", "before");
    assert_eq!(payloads(&deliveries(&on_b, 1)), ["before"]);

    server.restart();
    eventually("both bridges are back", || {
        bridge_a.stats().reconnects > 0
            && bridge_a.is_connected()
            && bridge_b.stats().reconnects > 0
            && bridge_b.is_connected()
    });
    a.publish("chat", "after");
    let got = payloads(&deliveries(&on_b, 1));
    assert_eq!(got, ["after"]);
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!(stats.sent + stats.lost + stats.unknown, 2);
    assert_eq!(stats.sent, 2, "{stats:?}");
}

#[test]
#[ignore = "needs redis-server with TLS and openssl"]
fn a_certificate_the_roots_reject_fails_the_start_and_is_reported() {
    // Also on 127.0.0.2, an address the certificate does not name.
    let Some((pki, mut server)) = tls_server(&["--bind", "127.0.0.1", "127.0.0.2"]) else {
        return;
    };
    let broker = Broker::new();
    // Neither the public roots nor another CA vouch for the server.
    for other in [None, Some(pki.file("other-ca.crt"))] {
        let mut builder = Bridge::builder(&broker, &server.tls_url()).channels(["chat"]);
        if let Some(other) = other {
            builder = builder.tls_ca_file(other);
        }
        match builder.start() {
            Err(BridgeError::Misconfigured(ConnectError::Tls { addr, detail })) => {
                assert_eq!(addr, format!("127.0.0.1:{}", server.port()));
                assert!(detail.contains("certificate"), "{detail}");
            }
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }
    // A certificate for another name: the CA is right, the host is not.
    let url = format!("rediss://127.0.0.2:{}/", server.port());
    let error = Bridge::builder(&broker, &url)
        .tls_ca_file(pki.ca())
        .connect_timeout(Duration::from_millis(500))
        .start()
        .unwrap_err();
    assert!(
        matches!(&error, BridgeError::Misconfigured(ConnectError::Tls { detail, .. })
            if detail.contains("certificate")),
        "{error}"
    );

    // A server that comes up later with a rejected certificate: the bridge
    // keeps trying, and says why it is not connected.
    server.kill();
    let bridge = Bridge::builder(&broker, &server.tls_url())
        .channels(["chat"])
        .tls_ca_file(pki.file("other-ca.crt"))
        .tls_webpki_roots(false)
        .start()
        .expect("nothing listens yet: no error");
    server.restart();
    eventually("the bridge reports the TLS failure", || {
        matches!(bridge.last_error(), Some(ConnectError::Tls { .. }))
    });
    assert!(!bridge.is_connected());
    let shown = bridge.last_error().unwrap().to_string();
    assert!(shown.starts_with("TLS with 127.0.0.1:"), "{shown}");
}

#[test]
#[ignore = "needs redis-server with TLS and openssl"]
fn a_password_travels_over_tls() {
    let Some((pki, server)) = tls_server(&["--requirepass", "s3cret"]) else {
        return;
    };
    let port = server.port();
    // `localhost`: the certificate names it too.
    for url in [
        format!("rediss://:s3cret@localhost:{port}/"),
        format!("rediss://default:s3cret@127.0.0.1:{port}/"),
    ] {
        let (a, bridge_a) = bridged(&url, &pki.ca());
        let (b, _bridge_b) = bridged(&url, &pki.ca());
        let on_b = b.subscriber();
        on_b.subscribe(["chat"]).unwrap();
        a.publish("chat", "authenticated");
        assert_eq!(payloads(&deliveries(&on_b, 1)), ["authenticated"]);
        assert!(bridge_a.flush(PATIENCE));
        assert_eq!(bridge_a.stats().sent, 1);
    }
    for url in [
        server.tls_url(),
        format!("rediss://default:wrong@127.0.0.1:{port}/"),
    ] {
        let broker = Broker::new();
        let error = Bridge::builder(&broker, &url)
            .tls_ca_file(pki.ca())
            .start()
            .unwrap_err();
        assert!(
            matches!(error, BridgeError::Misconfigured(ConnectError::Auth { .. })),
            "{error}"
        );
    }
}

#[test]
#[ignore = "needs redis-server with TLS and openssl"]
fn plain_redis_to_a_tls_port_says_so() {
    let Some((pki, server)) = tls_server(&[]) else {
        return;
    };
    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, &server.url())
        .channels(["chat"])
        .connect_timeout(Duration::from_secs(1))
        .start()
        .expect("a cut connection is no definite error");
    assert!(!bridge.wait_connected(Duration::from_millis(300)));
    match bridge.last_error() {
        Some(ConnectError::Io { detail, .. }) => {
            assert!(detail.contains("use a rediss:// URL"), "{detail}");
        }
        other => panic!("expected a cut connection, got {other:?}"),
    }
    drop(bridge);

    // The other way round: TLS to a plain port.
    let Some(plain) = Server::start(&[]) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/", plain.port());
    // Redis reads the TLS hello as an inline command: it waits for a
    // newline (no answer), or answers an error when the hello's random
    // bytes hold one (not TLS).
    match Bridge::builder(&broker, &url)
        .tls_ca_file(pki.ca())
        .connect_timeout(Duration::from_millis(500))
        .start()
    {
        Err(BridgeError::Misconfigured(ConnectError::Tls { .. })) => {}
        Ok(bridge) => {
            assert!(!bridge.wait_connected(Duration::from_millis(300)));
            assert!(
                matches!(
                    bridge.last_error(),
                    Some(ConnectError::NoAnswer { .. } | ConnectError::Tls { .. })
                ),
                "{:?}",
                bridge.last_error()
            );
        }
        Err(other) => panic!("expected a TLS error or no answer, got {other}"),
    }
}

#[test]
fn tls_settings_and_urls_are_checked_at_start() {
    let broker = Broker::new();
    let missing = std::env::temp_dir().join("channelcast-no-such-ca.pem");
    let error = Bridge::builder(&broker, "rediss://127.0.0.1:1/")
        .tls_ca_file(&missing)
        .start()
        .unwrap_err();
    assert!(matches!(error, BridgeError::TlsSettings { .. }), "{error}");
    let error = Bridge::builder(&broker, "rediss://127.0.0.1:1/")
        .tls_ca_pem("not a certificate")
        .start()
        .unwrap_err();
    assert!(matches!(error, BridgeError::TlsSettings { .. }), "{error}");
    let error = Bridge::builder(&broker, "rediss://127.0.0.1:1/")
        .tls_webpki_roots(false)
        .start()
        .unwrap_err();
    assert!(matches!(error, BridgeError::TlsSettings { .. }), "{error}");
    let error = Bridge::builder(&broker, "rediss://127.0.0.1:1/#insecure")
        .start()
        .unwrap_err();
    assert!(matches!(error, BridgeError::InvalidUrl { .. }), "{error}");
}
