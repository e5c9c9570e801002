//! Public signing keys on the real binary: RS256, ES256 and EdDSA keys from PEM files
//! and a JWKS file read again on SIGHUP, with the confused tokens refused (4001).
//! The key pairs are generated at run time (`switchyard_core::testing::keys`).

use serde_json::{Value, json};
use switchyard_core::testing::keys::TestKeyPair;
use switchyard_core::token::{Algorithm, SigningKey, mint};

use super::common::Ws;
use super::reload::{expect_refused, expect_welcome, log_until, signal, stop};
use super::*;

const PUBLIC: [(Algorithm, &str); 3] = [
    (Algorithm::RS256, "rs"),
    (Algorithm::ES256, "es"),
    (Algorithm::EdDSA, "ed"),
];

fn claims(sub: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    json!({"sub": sub, "exp": now + 600, "channels": ["lobby"], "permissions": ["subscribe"]})
}

/// `[[auth.keys]]` entries for `keys` (kid, algorithm, PEM file) after the config
/// of [`write_config`].
fn add_keys(config: &std::path::Path, keys: &[(&str, &str, &std::path::Path)]) {
    let mut text = std::fs::read_to_string(config).expect("read config");
    for (kid, alg, file) in keys {
        text.push_str(&format!(
            "\n[[auth.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\npublic_key_file = {:?}\n",
            file.to_str().unwrap()
        ));
    }
    std::fs::write(config, text).expect("write config");
}

async fn connect(server: &Served, token: &str) -> Ws {
    Ws::connect(server.ws, &format!("/v1?token={token}")).await
}

#[tokio::test]
async fn rs256_es256_and_eddsa_pem_keys_accept_their_tokens_and_refuse_confused_ones() {
    let dir = temp_dir("pem-keys");
    let config = write_config(&dir);
    let mut keys = Vec::new();
    for (alg, kid) in PUBLIC {
        let file = dir.join(format!("{kid}.pem"));
        std::fs::write(&file, TestKeyPair::get(alg).public_pem()).expect("write PEM");
        keys.push((kid, alg.as_str(), file));
    }
    let entries: Vec<_> = keys.iter().map(|(k, a, f)| (*k, *a, f.as_path())).collect();
    add_keys(&config, &entries);
    let server = serve(&config).await;

    for (alg, kid) in PUBLIC {
        let token = TestKeyPair::get(alg).token(kid, &claims(kid));
        let mut ws = connect(&server, &token).await;
        let welcome = expect_welcome(&mut ws, kid).await;
        assert!(
            welcome.contains(&format!(r#""peerId":"{kid}""#)),
            "{welcome}"
        );
    }
    // HS256 keyed with the RSA public key's PEM, under the RSA kid.
    let forger = SigningKey {
        kid: "rs".into(),
        secret: TestKeyPair::get(Algorithm::RS256).public_pem().into_bytes(),
        algorithm: Algorithm::HS256,
        public_key: None,
        audience: None,
        tenant: None,
    };
    let hmac = mint(&forger, &claims("mallory")).expect("HS256 signs");
    // An ES256 token under the RSA kid, and an RS256 one under the Ed25519 kid.
    let es_as_rs = TestKeyPair::get(Algorithm::ES256).token("rs", &claims("mallory"));
    let rs_as_ed = TestKeyPair::get(Algorithm::RS256).token("ed", &claims("mallory"));
    for (what, token) in [
        ("hmac", hmac),
        ("es_as_rs", es_as_rs),
        ("rs_as_ed", rs_as_ed),
    ] {
        let mut ws = connect(&server, &token).await;
        assert_eq!(
            expect_refused(&mut ws, what).await,
            (4001, "invalid token".to_owned()),
            "{what}"
        );
    }
    // `checktoken` verifies with the same keys.
    let token = TestKeyPair::get(Algorithm::EdDSA).token("ed", &claims("cli"));
    let (ok, out, err) = run(&["checktoken", "-c", config.to_str().unwrap(), &token]).await;
    assert!(ok && out.contains("cli"), "{out}{err}");
    stop(server).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_public_key_file_that_does_not_fit_its_key_stops_the_start_with_its_reason() {
    let dir = temp_dir("pem-errors");
    let ec = dir.join("ec.pem");
    std::fs::write(&ec, TestKeyPair::get(Algorithm::ES256).public_pem()).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.join("missing.pem");
    let cases: [(&str, &str, &std::path::Path, &str); 4] = [
        ("wrong", "RS256", &ec, "not RS256 public key"),
        ("cert", "ES256", &cert, "a certificate, not a public key"),
        ("gone", "EdDSA", &missing, "cannot read public_key_file"),
        ("odd", "PS256", &ec, "unsupported algorithm"),
    ];
    for (kid, alg, file, reason) in cases {
        let config = write_config(&dir);
        add_keys(&config, &[(kid, alg, file)]);
        let (ok, _, err) = run(&["checktoken", "-c", config.to_str().unwrap(), "x"]).await;
        assert!(!ok, "{kid}: the config was accepted");
        assert!(err.contains(kid) && err.contains(reason), "{kid}: {err}");
    }
    // A secret with an RSA key, and an HMAC key without its secret.
    for (entry, reason) in [
        (
            "kid = \"both\"\nalgorithm = \"RS256\"\nsecret = \"s\"\npublic_key_file = \"x.pem\"",
            "takes no secret",
        ),
        ("kid = \"bare\"\nalgorithm = \"HS384\"", "needs a secret"),
        (
            "kid = \"nofile\"\nalgorithm = \"ES256\"",
            "needs a public_key_file",
        ),
    ] {
        let config = dir.join("switchyard.toml");
        std::fs::write(&config, format!("[[auth.keys]]\n{entry}\n")).unwrap();
        let (ok, _, err) = run(&["checktoken", "-c", config.to_str().unwrap(), "x"]).await;
        assert!(!ok && err.contains(reason), "{entry}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_jwks_file_is_read_again_on_sighup_and_a_removed_kid_is_closed_4001() {
    let dir = temp_dir("jwks");
    let config = write_config(&dir);
    let jwks = dir.join("jwks.json");
    let es = TestKeyPair::get(Algorithm::ES256);
    let ed = TestKeyPair::get(Algorithm::EdDSA);
    let write_jwks = |keys: Vec<Value>| {
        // Written whole, then renamed, as a fetcher should.
        let tmp = dir.join("jwks.json.tmp");
        std::fs::write(&tmp, json!({ "keys": keys }).to_string()).expect("write JWKS");
        std::fs::rename(&tmp, &jwks).expect("rename JWKS");
    };
    let encryption = json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"});
    write_jwks(vec![es.jwk("idp-1"), encryption.clone()]);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[[auth.keys]]",
        &format!(
            "[auth]\njwks_file = {:?}\n\n[[auth.keys]]",
            jwks.to_str().unwrap()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let mut server = serve(&config).await;

    let mut old = connect(&server, &es.token("idp-1", &claims("old"))).await;
    expect_welcome(&mut old, "old").await;
    let mut early = connect(&server, &ed.token("idp-2", &claims("early"))).await;
    assert_eq!(expect_refused(&mut early, "early").await.0, 4001);

    // The provider rotates: idp-2 in, idp-1 out.
    write_jwks(vec![ed.jwk("idp-2"), encryption]);
    signal(&server, "HUP").await;
    assert_eq!(
        old.expect_close("old's close after SIGHUP").await,
        (4001, "credentials revoked by reconfiguration".to_owned())
    );
    let reloaded = log_until(&mut server, "SIGHUP: config reloaded").await;
    assert!(reloaded.contains("closed=1"), "{reloaded}");
    let mut new = connect(&server, &ed.token("idp-2", &claims("new"))).await;
    expect_welcome(&mut new, "new").await;
    let mut stale = connect(&server, &es.token("idp-1", &claims("stale"))).await;
    assert_eq!(
        expect_refused(&mut stale, "stale").await,
        (4001, "invalid token".to_owned())
    );

    // A broken file is refused whole: the server keeps idp-2.
    std::fs::write(&jwks, "{ not json").unwrap();
    signal(&server, "HUP").await;
    let refused = log_until(&mut server, "jwks_file").await;
    assert!(refused.contains("not a JSON Web Key Set"), "{refused}");
    let mut kept = connect(&server, &ed.token("idp-2", &claims("kept"))).await;
    expect_welcome(&mut kept, "kept").await;
    stop(server).await;
    let _ = std::fs::remove_dir_all(dir);
}
