//! What the debug logs must never show: tokens and API keys.

use super::*;

#[tokio::test]
async fn no_token_or_api_key_reaches_the_debug_logs() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = temp_dir("secrets");
    let config = write_config(&dir);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[api.keys]]\nid = \"ak_ops\"\nsecret = \"api-secret-never-logged-42\"\n");
    // An access token from the CLI, pasted into the config as an operator would.
    let (ok, block, err) = run(&["access-token", "new", "--subscribe", "c"]).await;
    assert!(ok, "{err}");
    let access = block
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("the token line")
        .to_owned();
    assert!(access.starts_with("AT_"), "{block}");
    text.push_str(&block);
    std::fs::write(&config, text).unwrap();
    let mut server = serve(&config).await;
    let (by_header, by_protocol, by_query) = (
        token(&config, "h").await,
        token(&config, "p").await,
        token(&config, "q").await,
    );
    // Authorization header.
    let mut request = format!("ws://{}/v1", server.ws)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {by_header}").parse().unwrap(),
    );
    let stream = tokio::net::TcpStream::connect(server.ws).await.unwrap();
    let (inner, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert!(
        Ws { inner }
            .expect_text("welcome")
            .await
            .contains("welcome")
    );
    // Subprotocol, and the query string.
    let (mut ws, _) = Ws::handshake(server.ws, "/v1", Some(&format!("bearer.{by_protocol}")))
        .await
        .unwrap();
    assert!(ws.expect_text("welcome").await.contains("welcome"));
    let mut ws = Ws::connect(server.ws, &format!("/v1?token={by_query}")).await;
    assert!(ws.expect_text("welcome").await.contains("welcome"));
    // The access token, as a browser offers it (a bare subprotocol entry) and in a header.
    let (mut ws, _) = Ws::handshake(server.ws, "/v1", Some(&access))
        .await
        .unwrap();
    assert!(ws.expect_text("welcome").await.contains("welcome"));
    let mut request = format!("ws://{}/v1", server.ws)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {access}").parse().unwrap());
    let stream = tokio::net::TcpStream::connect(server.ws).await.unwrap();
    let (inner, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert!(
        Ws { inner }
            .expect_text("welcome")
            .await
            .contains("welcome")
    );
    // A REST call with the API key.
    let mut rest = tokio::net::TcpStream::connect(server.ws).await.unwrap();
    rest.write_all(
        b"GET /v1/usage HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer ak_ops:api-secret-never-logged-42\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut rest, &mut response)
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let _ = server.child.start_kill();
    let mut logged = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(2), server.logs.next_line()).await
    {
        logged.push_str(&line);
        logged.push('\n');
    }
    assert!(
        logged.contains("connection opened"),
        "debug logs were captured:\n{logged}"
    );
    for secret in [&by_header, &by_protocol, &by_query] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !logged.contains(signature),
            "a token reached the logs:\n{logged}"
        );
    }
    assert!(
        !logged.contains("api-secret-never-logged-42"),
        "the API key reached the logs:\n{logged}"
    );
    let access_secret = access.rsplit('_').next().unwrap();
    assert!(
        !logged.contains(access_secret),
        "an access token reached the logs:\n{logged}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
