//! Tests of [`super::Authenticator`]: every token form, algorithm and refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";
const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/keys/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../tests/keys/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../tests/keys/ec_public.pem");

fn config() -> Config {
    let mut c = Config::for_tests();
    c.jwt_secret = None;
    c.jwt_public_key = None;
    c.jwt_algorithm = None;
    c.dev_tokens = None;
    c.jwt_leeway_secs = 30;
    c
}

fn hs256() -> Authenticator {
    let mut c = config();
    c.jwt_secret = Some(SECRET.into());
    Authenticator::from_config(&c).unwrap()
}

fn sign_hs(claims: &serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(sub: serde_json::Value, user_type: &str) -> serde_json::Value {
    json!({"sub": sub, "userType": user_type, "exp": NOW + 3600})
}

fn brand(id: i64) -> UserKey {
    UserKey::new(UserType::Brand, id)
}

#[test]
fn hs256_bearer_and_bare_tokens_with_numeric_or_string_sub() {
    let auth = hs256();
    assert!(!auth.dev_tokens_enabled(), "a JWT key turns dev tokens off");
    let token = sign_hs(&claims(json!(42), "brand"));
    let id = auth.authenticate(&format!("Bearer {token}"), NOW).unwrap();
    assert_eq!(
        id,
        Identity {
            user: brand(42),
            profile: None,
            expires_at: Some(NOW + 3600 + 30),
        }
    );
    assert_eq!(
        auth.authenticate("42:brand", NOW).map(|i| i.expires_at),
        Err(AuthError::NotAccepted)
    );
    assert_eq!(auth.authenticate(&token, NOW).unwrap().user, brand(42));
    let token = sign_hs(&claims(json!("7"), "influencer"));
    assert_eq!(
        auth.authenticate(&token, NOW).unwrap().user,
        UserKey::new(UserType::Influencer, 7)
    );
}

#[test]
fn profile_claims_become_the_profile() {
    let auth = hs256();
    let mut c = claims(json!(3), "brand");
    c["firstName"] = json!("Ada");
    c["profileImage"] = json!("https://img.example/a.png");
    let id = auth.authenticate(&sign_hs(&c), NOW).unwrap();
    assert_eq!(
        id.profile,
        Some(Profile {
            username: "brand_3".into(),
            first_name: Some("Ada".into()),
            last_name: None,
            profile_image: Some("https://img.example/a.png".into()),
        })
    );
    c["username"] = json!("ada");
    let id = auth.authenticate(&sign_hs(&c), NOW).unwrap();
    assert_eq!(id.profile.unwrap().username, "ada");
    c["lastName"] = json!(12);
    assert_eq!(
        auth.authenticate(&sign_hs(&c), NOW),
        Err(AuthError::BadProfile)
    );
}

#[test]
fn rs256_and_es256_verify_with_public_keys() {
    for (alg, private, public, jwt_alg) in [
        (
            Algorithm::RS256,
            RSA_PRIVATE,
            RSA_PUBLIC,
            JwtAlgorithm::RS256,
        ),
        (Algorithm::ES256, EC_PRIVATE, EC_PUBLIC, JwtAlgorithm::ES256),
    ] {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        };
        let token = encode(&Header::new(alg), &claims(json!(9), "brand"), &key).unwrap();
        // Explicit algorithm and inferred from the key type give the same result.
        for explicit in [Some(jwt_alg), None] {
            let mut c = config();
            c.jwt_public_key = Some(public.into());
            c.jwt_algorithm = explicit;
            let auth = Authenticator::from_config(&c).unwrap();
            assert_eq!(
                auth.authenticate(&token, NOW).unwrap().user,
                brand(9),
                "{alg:?}"
            );
            assert_eq!(
                auth.authenticate(&sign_hs(&claims(json!(9), "brand")), NOW),
                Err(AuthError::Invalid),
                "{alg:?} config must refuse an HS256 token"
            );
        }
    }
}

#[test]
fn public_key_from_a_file_or_with_escaped_newlines() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/ec_public.pem");
    let mut c = config();
    c.jwt_public_key = Some(path.into());
    assert!(Authenticator::from_config(&c).is_ok());
    c.jwt_public_key = Some(EC_PUBLIC.trim().replace('\n', "\\n"));
    assert!(Authenticator::from_config(&c).is_ok());
    c.jwt_public_key = Some("/nonexistent/key.pem".into());
    assert!(matches!(
        Authenticator::from_config(&c),
        Err(AuthConfigError::KeyFile { .. })
    ));
}

#[test]
fn algorithm_is_pinned_by_configuration_not_the_token() {
    // The classic confusion attack: HS256 signed with the RSA public key as the secret.
    let mut c = config();
    c.jwt_public_key = Some(RSA_PUBLIC.into());
    c.jwt_algorithm = Some(JwtAlgorithm::RS256);
    let auth = Authenticator::from_config(&c).unwrap();
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!(1), "brand"),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(auth.authenticate(&forged, NOW), Err(AuthError::Invalid));

    // An ES256 token against an HS256 configuration.
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims(json!(1), "brand"),
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(hs256().authenticate(&es, NOW), Err(AuthError::Invalid));

    // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOjEsInVzZXJUeXBlIjoiYnJhbmQiLCJleHAiOjk5OTk5OTk5OTl9.";
    assert_eq!(hs256().authenticate(none, NOW), Err(AuthError::Invalid));
}

#[test]
fn bad_signature_and_garbage_are_invalid() {
    let auth = hs256();
    let other = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!(1), "brand"),
        &EncodingKey::from_secret(b"another secret entirely, also long enough"),
    )
    .unwrap();
    assert_eq!(auth.authenticate(&other, NOW), Err(AuthError::Invalid));
    for garbage in [
        "abc",
        "a.b.c",
        "Bearer x.y",
        "....",
        "\u{1F600}.\u{1F600}.x",
    ] {
        assert_eq!(
            auth.authenticate(garbage, NOW),
            Err(AuthError::Invalid),
            "{garbage}"
        );
    }
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(auth.authenticate(&huge, NOW), Err(AuthError::Invalid));
}

#[test]
fn expiry_is_required_and_checked_with_leeway_against_the_given_clock() {
    let auth = hs256();
    let at = |exp: u64| sign_hs(&json!({"sub": 1, "userType": "brand", "exp": exp}));
    assert!(
        auth.authenticate(&at(NOW - 20), NOW).is_ok(),
        "inside the 30 s leeway"
    );
    let expired = auth.authenticate(&at(NOW - 31), NOW).unwrap_err();
    assert_eq!(expired, AuthError::Expired);
    assert_eq!(expired.message(), "token expired");
    // The same token is fine at an earlier clock: time comes from the caller.
    assert!(auth.authenticate(&at(NOW - 31), NOW - 100).is_ok());

    let no_exp = sign_hs(&json!({"sub": 1, "userType": "brand"}));
    assert_eq!(
        auth.authenticate(&no_exp, NOW),
        Err(AuthError::MissingExpiry)
    );
    let text_exp = sign_hs(&json!({"sub": 1, "userType": "brand", "exp": "soon"}));
    assert!(auth.authenticate(&text_exp, NOW).is_err());

    let early = sign_hs(&json!({"sub": 1, "userType": "brand", "exp": NOW + 999, "nbf": NOW + 60}));
    assert_eq!(auth.authenticate(&early, NOW), Err(AuthError::NotYetValid));
    assert!(auth.authenticate(&early, NOW + 40).is_ok());
}

#[test]
fn bad_sub_and_user_type_are_refused() {
    let auth = hs256();
    for sub in [
        json!(0),
        json!(-4),
        json!("abc"),
        json!("-4"),
        json!(1.5),
        json!(null),
        json!(""),
    ] {
        assert_eq!(
            auth.authenticate(&sign_hs(&claims(sub.clone(), "brand")), NOW),
            Err(AuthError::BadSubject),
            "{sub}"
        );
    }
    let missing = sign_hs(&json!({"userType": "brand", "exp": NOW + 60}));
    assert_eq!(auth.authenticate(&missing, NOW), Err(AuthError::BadSubject));
    for user_type in ["Brand", "admin", ""] {
        assert_eq!(
            auth.authenticate(&sign_hs(&claims(json!(1), user_type)), NOW),
            Err(AuthError::BadUserType),
            "{user_type}"
        );
    }
}

#[test]
fn dev_tokens_when_enabled() {
    let auth = Authenticator::from_config(&config()).unwrap();
    assert!(
        auth.dev_tokens_enabled(),
        "no JWT key: dev tokens on by default"
    );
    assert_eq!(
        auth.authenticate("123:influencer", NOW).unwrap().user,
        UserKey::new(UserType::Influencer, 123)
    );
    assert_eq!(
        auth.authenticate("Bearer 456:brand", NOW).unwrap().user,
        brand(456)
    );
    assert_eq!(
        auth.authenticate("bearer 456:brand", NOW).unwrap().user,
        brand(456)
    );
    assert_eq!(auth.authenticate("456:brand", NOW).unwrap().profile, None);
    for bad_id in [
        "0:brand",
        "-1:brand",
        "+1:brand",
        "1.0:brand",
        ":brand",
        "x:brand",
        "99999999999999999999:brand",
    ] {
        assert_eq!(
            auth.authenticate(bad_id, NOW),
            Err(AuthError::BadSubject),
            "{bad_id}"
        );
    }
    for bad_type in ["1:Brand", "1:admin", "1:", "1:brand:2"] {
        assert_eq!(
            auth.authenticate(bad_type, NOW),
            Err(AuthError::BadUserType),
            "{bad_type}"
        );
    }
    // Without a key, a JWT cannot be verified.
    let jwt = sign_hs(&claims(json!(1), "brand"));
    assert_eq!(auth.authenticate(&jwt, NOW), Err(AuthError::NotAccepted));
    assert_eq!(auth.authenticate("", NOW), Err(AuthError::Missing));
    assert_eq!(auth.authenticate("Bearer ", NOW), Err(AuthError::Missing));
}

#[test]
fn dev_tokens_when_disabled() {
    let auth = hs256();
    let err = auth.authenticate("5:brand", NOW).unwrap_err();
    assert_eq!(err, AuthError::NotAccepted);
    assert_eq!(err.message(), "unauthorized");
    assert_eq!(err.code(), "unauthorized");
    let mut c = config();
    c.dev_tokens = Some(false);
    let auth = Authenticator::from_config(&c).unwrap();
    assert_eq!(
        auth.authenticate("Bearer 5:brand", NOW),
        Err(AuthError::NotAccepted)
    );
    // Explicitly on next to a JWT key: both forms work.
    let mut c = config();
    c.jwt_secret = Some(SECRET.into());
    c.dev_tokens = Some(true);
    let auth = Authenticator::from_config(&c).unwrap();
    assert!(auth.authenticate("5:brand", NOW).is_ok());
    assert!(
        auth.authenticate(&sign_hs(&claims(json!(5), "brand")), NOW)
            .is_ok()
    );
}

#[test]
fn configuration_mistakes_are_reported() {
    let mut c = config();
    c.jwt_algorithm = Some(JwtAlgorithm::HS256);
    assert!(matches!(
        Authenticator::from_config(&c),
        Err(AuthConfigError::MissingSecret)
    ));
    c.jwt_algorithm = Some(JwtAlgorithm::ES256);
    assert!(matches!(
        Authenticator::from_config(&c),
        Err(AuthConfigError::MissingPublicKey(_))
    ));
    c.jwt_public_key = Some(RSA_PUBLIC.into());
    assert!(matches!(
        Authenticator::from_config(&c),
        Err(AuthConfigError::BadKey(JwtAlgorithm::ES256))
    ));
    c.jwt_algorithm = None;
    c.jwt_secret = Some(SECRET.into());
    assert!(matches!(
        Authenticator::from_config(&c),
        Err(AuthConfigError::Ambiguous)
    ));
    c.jwt_public_key =
        Some("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----".into());
    c.jwt_algorithm = Some(JwtAlgorithm::RS256);
    assert!(matches!(
        Authenticator::from_config(&c),
        Err(AuthConfigError::BadKey(_))
    ));
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let mut c = config();
    c.jwt_secret = Some(SECRET.into());
    c.jwt_audience = Some("chat-api".into());
    c.jwt_issuer = Some("https://id.example.com".into());
    let auth = Authenticator::from_config(&c).unwrap();
    let with = |extra: serde_json::Value| {
        let mut claims = claims(json!(7), "brand");
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        auth.authenticate(&sign_hs(&claims), NOW)
    };
    let iss = "https://id.example.com";
    assert_eq!(
        with(json!({"aud": "chat-api", "iss": iss})).unwrap().user,
        brand(7)
    );
    assert!(with(json!({"aud": ["other", "chat-api"], "iss": iss})).is_ok());
    let wrong_aud = with(json!({"aud": "other", "iss": iss})).unwrap_err();
    assert_eq!(wrong_aud, AuthError::BadAudience);
    assert_eq!(wrong_aud.message(), "invalid token audience");
    assert_eq!(with(json!({"iss": iss})), Err(AuthError::BadAudience));
    assert_eq!(
        with(json!({"aud": "chat-api", "iss": "https://evil.example"})),
        Err(AuthError::BadIssuer)
    );
    assert_eq!(with(json!({"aud": "chat-api"})), Err(AuthError::BadIssuer));
    // Unconfigured, neither claim is looked at.
    let plain = hs256();
    let token =
        sign_hs(&json!({"sub": 7, "userType": "brand", "exp": NOW + 60, "aud": "x", "iss": "y"}));
    assert!(plain.authenticate(&token, NOW).is_ok());
}
