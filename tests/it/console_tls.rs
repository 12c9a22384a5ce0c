//! The console serving HTTPS itself (console.tls_cert_file / tls_key_file): a real TLS client
//! signs in over a socket, and the session cookie is marked Secure.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use nxguard::{
    config::ConsoleConfig,
    evidence::store,
    review::console::{self, Console, auth},
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

#[tokio::test]
async fn over_tls_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["console.test".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let attempts = dir.path().join("attempts.sqlite");
    store::insert_all(&attempts, &[], None, "ns1").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let config = ConsoleConfig {
        listen,
        state_path: Some(dir.path().join("console.sqlite")),
        tls_cert_file: Some(cert),
        tls_key_file: Some(key),
        ..ConsoleConfig::default()
    };
    let console = Console::open(config, attempts, None, Arc::new(std::time::SystemTime::now)).unwrap();
    auth::add_user(
        &console.db().unwrap(),
        "ciso",
        auth::Role::Officer,
        "a long enough password",
        std::time::SystemTime::now(),
    )
    .unwrap();
    let server = tokio::spawn(console::serve(Arc::new(console)));

    let client = trusting(&generated.cert.pem());
    let tcp = connect_once_listening(listen).await;
    let name = ServerName::try_from("console.test").unwrap();
    let connector = TlsConnector::from(Arc::new(client));
    // The sign-in form first (its CSRF cookie and field), then the sign-in, as a browser does.
    let form_page = exchange(&connector, tcp, &name, "GET /login HTTP/1.1\r\nHost: console.test\r\n").await;
    let login_cookie = form_page.split("nxguard_login=").nth(1).unwrap().split(';').next().unwrap().to_string();
    let csrf = form_page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let form = format!("csrf={csrf}&user=ciso&password=a+long+enough+password");
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: console.test\r\nCookie: nxguard_login={login_cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let tcp = TcpStream::connect(listen).await.unwrap();
    let reply = exchange(&connector, tcp, &name, &request).await;
    assert!(reply.starts_with("HTTP/1.1 303"), "{reply}");
    let cookie = reply.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    for part in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    server.abort();
}

/// A TLS client that trusts only the certificate in `pem`.
fn trusting(pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A connection to `listen`, tried again until the console listens (up to 5 s).
async fn connect_once_listening(listen: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(listen).await {
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("console listening");
}

/// One request over a new TLS connection (closed after it); the whole reply.
async fn exchange(connector: &TlsConnector, tcp: TcpStream, name: &ServerName<'static>, head: &str) -> String {
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    let request = if head.contains("\r\n\r\n") {
        head.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
    } else {
        format!("{head}Connection: close\r\n\r\n")
    };
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}
