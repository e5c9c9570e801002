use super::*;
use tokio_tungstenite::tungstenite::http;

const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = http::Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid request")
}

fn token(t: &str) -> Credentials {
    Credentials::Token(t.into())
}

#[test]
fn query_token_loses_one_trailing_slash_from_the_rtc_io_endpoint() {
    assert_eq!(query_credentials("token=J/"), token("J"));
    assert_eq!(query_credentials("token=J//"), token("J/"));
    assert_eq!(query_credentials("token=J"), token("J"));
}

#[test]
fn query_values_are_percent_decoded_and_token_wins_over_key() {
    assert_eq!(query_credentials("token=a%2Bb%3D"), token("a+b="));
    assert_eq!(
        query_credentials("key=pk_1&token=T"),
        token("T"),
        "token is preferred over key whatever the order"
    );
    assert_eq!(
        query_credentials("key=pk%5F1/"),
        Credentials::Key("pk_1".into())
    );
    assert_eq!(query_credentials("room=x&token="), Credentials::None);
}

#[test]
fn bearer_header_is_case_insensitive_and_needs_a_token() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer   abc "), Some("abc"));
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearer "), None);
}

#[test]
fn subprotocol_tokens_are_bearer_entries_jwts_and_at_tokens() {
    let offered = Offered::parse(["chat, bearer.T1"]);
    assert_eq!(offered.token, Some(("T1".into(), "bearer.T1".into())));
    let offered = Offered::parse(["chat", JWT]);
    assert_eq!(offered.token, Some((JWT.into(), JWT.into())));
    let offered = Offered::parse(["AT_abc"]);
    assert_eq!(offered.token, Some(("AT_abc".into(), "AT_abc".into())));
    let offered = Offered::parse(["a.b", "a.b.c.d", "a..c", "chat"]);
    assert_eq!(offered.token, None, "not JWT-shaped, not a token");
}

#[test]
fn echo_prefers_the_dialect_entry_then_the_token_entry() {
    let signaller = Dialect::Signaller.name();
    let both = Offered::parse([format!("bearer.T, {signaller}").as_str()]);
    assert_eq!(both.echo().as_deref(), Some(signaller));
    let token_only = Offered::parse([JWT]);
    assert_eq!(token_only.echo().as_deref(), Some(JWT));
    assert_eq!(Offered::parse(["chat"]).echo(), None);
}

#[test]
fn header_beats_subprotocol_beats_query() {
    let offered = Offered::parse(["bearer.SUB"]);
    assert_eq!(
        credentials(Some("Bearer HDR"), &offered, Some("token=Q")),
        token("HDR")
    );
    assert_eq!(credentials(None, &offered, Some("token=Q")), token("SUB"));
    assert_eq!(
        credentials(None, &Offered::default(), Some("token=Q/")),
        token("Q")
    );
    assert_eq!(
        credentials(None, &Offered::default(), None),
        Credentials::None
    );
}

#[test]
fn path_picks_the_dialect_and_unknown_paths_or_names_are_404() {
    let routes = Routes::new([("/", "rtc-signaller"), ("/x", "klingon")]);
    let n = negotiate(&routes, &request("/?token=J/", &[])).expect("root is routed");
    assert_eq!(n.dialect, Dialect::Signaller);
    assert_eq!(n.credentials, token("J"));
    assert_eq!(n.protocol, None);
    assert_eq!(
        negotiate(&routes, &request("/nope", &[])),
        Err(StatusCode::NOT_FOUND)
    );
    assert_eq!(
        negotiate(&routes, &request("/x", &[])),
        Err(StatusCode::NOT_FOUND),
        "a route naming a dialect this build lacks is a 404"
    );
}

#[test]
fn the_default_routes_serve_every_dialect() {
    let routes = Routes::default();
    assert_eq!(routes.dialect("/"), Some(Dialect::Signaller));
    assert_eq!(routes.dialect("/v1"), Some(Dialect::Json));
    assert_eq!(routes.dialect("/broadcaster"), Some(Dialect::Broadcaster));
}

#[test]
fn a_trailing_slash_on_the_path_is_ignored() {
    let routes = Routes::new([("/room", "rtc-signaller")]);
    assert_eq!(routes.dialect("/room/"), Some(Dialect::Signaller));
    assert_eq!(routes.dialect("/room"), Some(Dialect::Signaller));
    assert_eq!(routes.dialect("/"), None);
}

#[test]
fn a_subprotocol_naming_a_dialect_overrides_the_path_and_is_echoed() {
    let routes = Routes::new([("/", Dialect::ALL[0].name())]);
    for dialect in Dialect::ALL {
        let offered = format!("bearer.T, {}", dialect.name());
        let req = request("/", &[("Sec-WebSocket-Protocol", offered.as_str())]);
        let n = negotiate(&routes, &req).expect("routed");
        assert_eq!(n.dialect, dialect);
        assert_eq!(n.protocol.as_deref(), Some(dialect.name()));
        assert_eq!(n.credentials, token("T"));
    }
}

#[test]
fn negotiate_reads_the_authorization_header() {
    let req = request(
        "/?key=pk",
        &[
            ("Authorization", "Bearer H"),
            ("Sec-WebSocket-Protocol", JWT),
        ],
    );
    let n = negotiate(&Routes::default(), &req).expect("routed");
    assert_eq!(n.credentials, token("H"));
    assert_eq!(
        n.protocol.as_deref(),
        Some(JWT),
        "the token entry is still echoed"
    );
}

#[test]
fn logged_uris_never_show_tokens_or_keys() {
    assert_eq!(
        Redacted("/v1?room=a&token=SECRET/&Key=pk").to_string(),
        "/v1?room=a&token=<redacted>&Key=<redacted>"
    );
    assert_eq!(Redacted("/").to_string(), "/");
}

#[test]
fn forwarded_for_counts_only_from_trusted_proxies() {
    use std::net::SocketAddr;

    use ipnet::IpNet;

    use super::client_addr;

    let nets = |list: &[&str]| -> Vec<IpNet> { list.iter().map(|n| n.parse().unwrap()).collect() };
    let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
    let direct: SocketAddr = "203.0.113.9:5000".parse().unwrap();
    let trusted = nets(&["10.0.0.0/8"]);
    let client = |remote, xff| client_addr(remote, xff, &trusted).to_string();
    assert_eq!(client(proxy, Some("198.51.100.7")), "198.51.100.7:0");
    // A client cannot speak for itself, only a trusted proxy can.
    assert_eq!(client(direct, Some("198.51.100.7")), "203.0.113.9:5000");
    // The nearest untrusted hop wins: a spoofed left part is ignored.
    assert_eq!(
        client(proxy, Some("1.2.3.4, 198.51.100.7, 10.0.0.9")),
        "198.51.100.7:0"
    );
    assert_eq!(client(proxy, Some("10.1.1.1, 10.0.0.9")), "10.1.1.1:0");
    assert_eq!(client(proxy, Some("not an ip")), "10.0.0.5:4000");
    assert_eq!(client(proxy, None), "10.0.0.5:4000");
    assert_eq!(client_addr(proxy, Some("198.51.100.7"), &[]), proxy);
    let v6 = nets(&["::1/128"]);
    assert_eq!(
        client_addr("[::1]:1".parse().unwrap(), Some("2001:db8::1"), &v6).to_string(),
        "[2001:db8::1]:0"
    );
}

#[test]
fn origins_are_checked_only_when_a_list_is_configured() {
    use super::origin_allowed;
    let list = vec!["https://app.example.com".to_owned()];
    assert!(origin_allowed(Some("https://evil.example"), &[]));
    assert!(origin_allowed(Some("https://app.example.com"), &list));
    assert!(origin_allowed(Some("HTTPS://APP.EXAMPLE.COM/"), &list));
    assert!(!origin_allowed(Some("https://evil.example"), &list));
    assert!(!origin_allowed(Some("null"), &list));
    assert!(
        origin_allowed(None, &list),
        "non-browser clients send no Origin"
    );
    assert!(origin_allowed(
        Some("https://any.example"),
        &["*".to_owned()]
    ));
}

#[test]
fn the_origin_header_is_handed_to_the_hub_with_the_access_token() {
    let at = "AT_k1_0123456789abcdef0123456789abcdef";
    let n = negotiate(
        &Routes::default(),
        &request(
            "/v1",
            &[
                ("Origin", "https://app.example.com"),
                ("Sec-WebSocket-Protocol", at),
            ],
        ),
    )
    .expect("negotiated");
    assert_eq!(n.origin.as_deref(), Some("https://app.example.com"));
    assert_eq!(n.credentials, token(at));
    assert_eq!(n.protocol.as_deref(), Some(at));
    let n = negotiate(
        &Routes::default(),
        &request("/v1", &[("Authorization", &format!("Bearer {at}"))]),
    )
    .expect("negotiated");
    assert_eq!((n.origin, n.credentials), (None, token(at)));
}
