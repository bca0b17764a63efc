#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn server(url: &str) -> ServerUrl {
    url.parse().unwrap()
}

#[test]
fn addresses_parse_with_their_kinds_default_ports_and_credentials() {
    let p = Proxy::parse("http://proxy.plant").unwrap();
    assert_eq!(
        (p.kind(), p.host(), p.port(), p.username()),
        (ProxyKind::Http, "proxy.plant", 8080, None)
    );
    let p = Proxy::parse("SOCKS5H://gw:p%40ss%3Aword@10.0.0.1:1081/").unwrap();
    assert_eq!(p.kind(), ProxyKind::Socks5h);
    assert_eq!(
        (p.username(), p.password()),
        (Some("gw"), Some("p@ss:word"))
    );
    assert_eq!(p.port(), 1081);
    let p = Proxy::parse("socks5://[::1]").unwrap();
    assert_eq!((p.host(), p.port()), ("::1", 1080));
    assert_eq!(p.to_string(), "socks5://[::1]:1080");
    for bad in [
        "proxy:3128",
        "ftp://p",
        "https://p",
        "http://",
        "http://p:99999",
        "http://[::1",
    ] {
        assert!(Proxy::parse(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn the_password_is_never_shown() {
    let p = Proxy::parse("http://gw:s3cret@proxy:3128").unwrap();
    assert_eq!(p.to_string(), "http://gw@proxy:3128");
    assert!(!format!("{p:?}").contains("s3cret"));
    let err = Proxy::parse("gopher://gw:s3cret@proxy")
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("s3cret") && err.contains("gw:<hidden>@proxy"),
        "{err}"
    );
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn the_environment_names_a_proxy_by_scheme_then_for_all_and_no_proxy_bypasses_it() {
    let vars = env(&[
        ("https_proxy", "http://tls-proxy:3128"),
        ("HTTP_PROXY", "http://plain-proxy:3128"),
        ("ALL_PROXY", "socks5h://any:1080"),
        ("no_proxy", "localhost, .plant.local,10.0.0.7"),
    ]);
    let host = |url: &str| {
        Proxy::from_env_with(&server(url), &vars)
            .unwrap()
            .map(|p| p.host().to_owned())
    };
    assert_eq!(
        host("mqtts://broker.cloud:8883").as_deref(),
        Some("tls-proxy")
    );
    assert_eq!(
        host("wss://broker.cloud/mqtt").as_deref(),
        Some("tls-proxy")
    );
    assert_eq!(host("mqtt://broker.cloud").as_deref(), Some("plain-proxy"));
    assert_eq!(host("mqtt://localhost"), None);
    assert_eq!(host("mqtt://line3.plant.local"), None);
    assert_eq!(host("mqtt://plant.local"), None);
    assert_eq!(host("mqtt://10.0.0.7"), None);
    assert_eq!(
        host("mqtt://notplant.local").as_deref(),
        Some("plain-proxy")
    );

    let only_all = env(&[("all_proxy", "socks5://any:1080"), ("http_proxy", "  ")]);
    let p = Proxy::from_env_with(&server("mqtt://b"), only_all)
        .unwrap()
        .unwrap();
    assert_eq!(p.kind(), ProxyKind::Socks5);
    assert!(
        Proxy::from_env_with(&server("mqtt://b"), env(&[]))
            .unwrap()
            .is_none()
    );
    assert!(
        Proxy::from_env_with(
            &server("mqtt://b"),
            env(&[("no_proxy", "*"), ("all_proxy", "http://p")])
        )
        .unwrap()
        .is_none()
    );
    assert!(Proxy::from_env_with(&server("mqtt://b"), env(&[("all_proxy", "p:1")])).is_err());
}

/// A proxy that reads one request head, answers `answer`, and hands back what it read.
async fn fake_http_proxy(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        while !got.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client closed early");
            got.extend_from_slice(&chunk[..n]);
        }
        s.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8(got).unwrap()
    });
    (port, task)
}

#[tokio::test]
async fn connect_asks_for_the_servers_authority_with_basic_credentials() {
    let (port, proxy) = fake_http_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
    let p = Proxy::parse(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_credentials("gw", "s3cret");
    p.tunnel(&server("mqtt://[::1]:1883")).await.unwrap();
    let request = proxy.await.unwrap();
    assert!(
        request.starts_with("CONNECT [::1]:1883 HTTP/1.1\r\nHost: [::1]:1883\r\n"),
        "{request}"
    );
    // base64("gw:s3cret")
    assert!(
        request.contains("Proxy-Authorization: Basic Z3c6czNjcmV0\r\n"),
        "{request}"
    );
}

#[tokio::test]
async fn a_refusal_says_what_the_proxy_wants() {
    for (answer, says) in [
        (
            "HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
            "407 Proxy Authentication Required: it wants a user name and password",
        ),
        ("HTTP/1.1 403 Forbidden\r\n\r\n", "refused: 403 Forbidden"),
        (
            "SSH-2.0-OpenSSH\r\n\r\n",
            "broke its protocol: not an HTTP response",
        ),
        (
            "HTTP/1.1 200 OK\r\n\r\nunasked",
            "broke its protocol: the proxy sent bytes after its answer",
        ),
    ] {
        let (port, _proxy) = fake_http_proxy(answer).await;
        let p = Proxy::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = p.tunnel(&server("mqtt://broker")).await.unwrap_err();
        assert!(err.to_string().contains(says), "{answer:?}: {err}");
    }
}

/// A SOCKS5 proxy without authentication that accepts one CONNECT and hands back its
/// address type and address bytes.
async fn fake_socks5() -> (u16, tokio::task::JoinHandle<(u8, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut greeting = [0u8; 2];
        s.read_exact(&mut greeting).await.unwrap();
        let mut methods = vec![0u8; usize::from(greeting[1])];
        s.read_exact(&mut methods).await.unwrap();
        assert!(methods.contains(&0), "no-authentication offered");
        s.write_all(&[5, 0]).await.unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[..3], &[5, 1, 0], "a CONNECT request");
        let address = match head[3] {
            1 => vec![0u8; 4],
            4 => vec![0u8; 16],
            3 => {
                let mut len = [0u8; 1];
                s.read_exact(&mut len).await.unwrap();
                vec![0u8; usize::from(len[0])]
            }
            other => panic!("address type {other}"),
        };
        let mut address = address;
        s.read_exact(&mut address).await.unwrap();
        let mut port = [0u8; 2];
        s.read_exact(&mut port).await.unwrap();
        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
            .await
            .unwrap();
        (head[3], address)
    });
    (port, task)
}

#[tokio::test]
async fn socks5h_leaves_the_name_to_the_proxy_and_socks5_resolves_it_first() {
    let (port, proxy) = fake_socks5().await;
    let p = Proxy::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
    p.tunnel(&server("mqtt://broker.plant.invalid:1883"))
        .await
        .unwrap();
    let (kind, address) = proxy.await.unwrap();
    assert_eq!(
        (kind, address.as_slice()),
        (3, &b"broker.plant.invalid"[..])
    );

    let (port, proxy) = fake_socks5().await;
    let p = Proxy::parse(&format!("socks5://127.0.0.1:{port}")).unwrap();
    p.tunnel(&server("mqtt://localhost:1883")).await.unwrap();
    let (kind, _) = proxy.await.unwrap();
    assert!(
        kind == 1 || kind == 4,
        "an IP address, not a name: type {kind}"
    );
}

#[test]
fn a_server_takes_its_own_proxy_then_the_one_for_every_server() {
    let mut routes = ProxyRoutes::default();
    let every = Proxy::parse("http://every:3128").unwrap();
    let own = Proxy::parse("socks5h://own:1080").unwrap();
    routes.set("mqtt://10.0.0.6".to_owned(), own.clone());
    assert!(routes.check().is_ok());
    // Addresses compare as servers: the default port written or not.
    let chosen = routes.choose(&server("mqtt://10.0.0.6:1883"), Some(&every));
    assert_eq!(chosen.unwrap(), Some(own));
    let chosen = routes.choose(&server("mqtt://10.0.0.5:1883"), Some(&every));
    assert_eq!(chosen.unwrap(), Some(every));
    assert_eq!(
        routes.choose(&server("mqtt://10.0.0.5"), None).unwrap(),
        None
    );
    routes.set(
        "not an address".to_owned(),
        Proxy::parse("http://p").unwrap(),
    );
    assert!(routes.check().is_err());
}
