//! Tests of `jwt_ring`.
use super::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

fn claims() -> Claims {
    Claims { sub: "user-1".to_owned(), exp: jsonwebtoken::get_current_timestamp() + 600 }
}

/// A fixed 2048-bit RSA key (`openssl genpkey` + `openssl pkcs8 -topk8`), PKCS#8 DER.
/// Test-only: generating RSA keys is not something ring can do.
const RSA_PKCS8_BASE64: &str = concat!(
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCyoEvd3CzGbY2eVmqi0YEcTFBL0ZaKuIhzhCpkNRtMpjswNyPy",
    "U9qTRQT0u1G3HDd7pEbF7QPBLQsugtEThX2sB37TOVen9nZIkLO65mXjUzcn7k+Yq5HEZ91qjhpocLKg5h52SWzwm29xL+73LQC3",
    "4oLd0O8Uj4MoNUS9VrQHu6zVYNCJHskKv/cXdShi7QtH3WW2jYwXdQMdHqdx0/b/XF2YJ+JZg60zA0hhIZqlpYVTCP+6jujShz2/",
    "Qy4GQCwnIu4Xb92HeeMSvOfbDvuCqghJlDjN4gj1IC5wdPjsfcmznR97dPqR+2i0xEa7dd1TyiSHIvOCQO8kt3EDGjSbAgMBAAEC",
    "ggEAO25j75wq9ZZLsSvVbPjBuVWWvbMtIFiHZc/Kfu7Ad38zYDZoal8F8Uvce0S7ym3D9ApTVdUnE6XV+5Kg15rplkwkIUkJ5iN1",
    "dW1Xr06rBbiROGLs7sHezPc1zxcaqDce57PI3NhPO7qrmIA3RNwfSg8+NWknsrKRE9atWUW4vn1eIdTxinI+pvzTp8RKXQgmpCmf",
    "D/vkq85YF7/S8MQg+ZurPvuiDj7vuEUKTB1CgjeC1B4kFt+UMZxjRvGCPuXxxnyDdgfoeMegz7JHLG8G7v36ujhMy6Oa38GlYeHX",
    "bX5hgF7MxQARSppCHEejIA0sUPMe39l7Rytw9EEKdyJXaQKBgQD2swrVTbep0qdZZk04kLdn+gdYzCeFPjTUix/wBpL9p1eSFxLb",
    "+ZxAMYES+55ijpQve1aninR2GY8JAQ3KqCyaMFJFMuNlVzHEuaPfKa7BLNlvR0YkfJUFrGKwoeX0VBr4ejeX7Z+u4PuqMn32O3KH",
    "bP7HLelcmKufN4Hz178DbQKBgQC5XEMiNKeTY06aR8NI21NnWo9Gye/RArS69hJElzWKt4UAijGxz0wZsYMeIAy3NbjD1818ZSyH",
    "EQQTsJeYN9XsznW4ERZp4XSPlKTpMlqWkVn/y0n+VxiM8rlGZcjS/O7qdRHUktYmOEcJEOZ7/YDBFBV15esFZNlqvsyRa2cLJwKB",
    "gCK20wFs7DlDYTUdRiR9iLFi54HBSJZhSIHYCeh2pFx5HcN657Z4i1olHSqUqZboxUVhL7JnszejJRN5SH2J6KzRu+Hs5T6vZFtw",
    "W/TdIrAgJYCZIO+lcDraJREB1x/obdslJ4mDcILlOcSbUkpB1z3jQn64oSvcd9nxr6GmbESJAoGBAJsQNNUjqWBiPjpQeGy1liMr",
    "HhsBCc8W7WxOOGALAu6Fsg0Ojp4KJcaEuoR0GU8W8Pdcy/kZhlODh56VJ2xeoWaWHOKb4N04j1Mh7Ydr6V52QAz92mucHtyinR3o",
    "PkVK9O9MelsTb3TPtZU+/yGQo6piC8XyTlbX1A45iVbJu40XAoGBAMUUEPd+F7nI8x62VEYw0W024F7pbsA2O/BKa3ZEbEFu8Gx6",
    "5NTGmRVz2a16K33BEcmqgO0SMUYemAneQO8S/cx0KbpTocK5FGy3vQxEh4Zf45a6CCIp6yA/Sz7hRh5G5zaLNboX+ozMl82meU91",
    "jSEHRtkNFQSsGZ4OEIqLe2JN",
);

fn rsa_pkcs8() -> Vec<u8> {
    STANDARD.decode(RSA_PKCS8_BASE64).unwrap()
}

/// The PKCS#1 `RSAPrivateKey` inside [`rsa_pkcs8`]: openssl's 2048-bit PKCS#8 wrapper is a
/// fixed 26-byte header ending in the OCTET STRING tag and length.
fn rsa_pkcs1() -> Vec<u8> {
    let pkcs8 = rsa_pkcs8();
    assert_eq!(pkcs8[22..26], [0x04, 0x82, 0x04, 0xa8]);
    pkcs8[26..].to_vec()
}

fn ed25519_pkcs8_v2() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref().to_vec()
}

/// The same key as PKCS#8 v1 (48 bytes), the only Ed25519 form that
/// `Jwk::from_encoding_key` accepts. ring's v2 template puts the seed at bytes 16..48.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Vec<u8> {
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(&v2[16..48]);
    v1
}

fn es256_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(
        &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .unwrap()
    .as_ref()
    .to_vec()
}

fn round_trip(algorithm: Algorithm, encoding: &EncodingKey, decoding: &DecodingKey) {
    install();
    let claims = claims();
    let token = encode(&Header::new(algorithm), &claims, encoding).unwrap();
    let decoded = decode::<Claims>(&token, decoding, &Validation::new(algorithm)).unwrap();
    assert_eq!(decoded.claims, claims);
    assert_eq!(decoded.header.alg, algorithm);
    assert_refuses_tampering(&token, algorithm, decoding);
    assert_refuses_alg_none(&token, algorithm, decoding);
}

fn assert_refuses_tampering(token: &str, algorithm: Algorithm, key: &DecodingKey) {
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    signature[0] ^= 1;
    let tampered = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature));
    let error = decode::<Claims>(&tampered, key, &Validation::new(algorithm)).unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidSignature);

    let (header, _) = message.split_once('.').unwrap();
    let other_claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":9999999999}"#);
    let swapped = format!("{header}.{other_claims}.{}", token.rsplit_once('.').unwrap().1);
    let error = decode::<Claims>(&swapped, key, &Validation::new(algorithm)).unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidSignature);
}

fn assert_refuses_alg_none(token: &str, algorithm: Algorithm, key: &DecodingKey) {
    let (_, rest) = token.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    for unsigned in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
        assert!(decode::<Claims>(&unsigned, key, &Validation::new(algorithm)).is_err());
    }
}

#[test]
fn hs256_round_trip() {
    let secret = b"a test secret";
    round_trip(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret),
        &DecodingKey::from_secret(secret),
    );
}

#[test]
fn hs256_refuses_another_secret() {
    install();
    let token =
        encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(b"one"))
            .unwrap();
    let error = decode::<Claims>(
        &token,
        &DecodingKey::from_secret(b"two"),
        &Validation::new(Algorithm::HS256),
    )
    .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidSignature);
}

#[test]
fn eddsa_round_trip_with_pkcs8_v1_and_v2() {
    let v2 = ed25519_pkcs8_v2();
    let public_key = Ed25519KeyPair::from_pkcs8(&v2).unwrap().public_key().as_ref().to_vec();
    let decoding = DecodingKey::from_ed_der(&public_key);
    round_trip(Algorithm::EdDSA, &EncodingKey::from_ed_der(&v2), &decoding);
    round_trip(Algorithm::EdDSA, &EncodingKey::from_ed_der(&ed25519_pkcs8_v1(&v2)), &decoding);
}

#[test]
fn eddsa_verifies_with_key_from_jwk() {
    install();
    let encoding = EncodingKey::from_ed_der(&ed25519_pkcs8_v1(&ed25519_pkcs8_v2()));
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap();
    round_trip(Algorithm::EdDSA, &encoding, &DecodingKey::from_jwk(&jwk).unwrap());
}

#[test]
fn es256_round_trip() {
    let pkcs8 = es256_pkcs8();
    let key_pair = EcdsaKeyPair::from_pkcs8(
        &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &SystemRandom::new(),
    )
    .unwrap();
    let decoding = DecodingKey::from_ec_der(key_pair.public_key().as_ref());
    round_trip(Algorithm::ES256, &EncodingKey::from_ec_der(&pkcs8), &decoding);
}

#[test]
fn es256_verifies_with_key_from_jwk() {
    install();
    let encoding = EncodingKey::from_ec_der(&es256_pkcs8());
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    round_trip(Algorithm::ES256, &encoding, &DecodingKey::from_jwk(&jwk).unwrap());
}

#[test]
fn es384_round_trip_with_key_from_jwk() {
    install();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .unwrap();
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES384).unwrap();
    round_trip(Algorithm::ES384, &encoding, &DecodingKey::from_jwk(&jwk).unwrap());
}

#[test]
fn rs256_and_ps256_round_trip_from_pkcs1_and_pkcs8() {
    install();
    let public_der = rsa_key_pair(&rsa_pkcs8()).unwrap().public().as_ref().to_vec();
    let from_der = DecodingKey::from_rsa_der(&public_der);
    for private in [rsa_pkcs1(), rsa_pkcs8()] {
        let encoding = EncodingKey::from_rsa_der(&private);
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
        let from_jwk = DecodingKey::from_jwk(&jwk).unwrap();
        for algorithm in [Algorithm::RS256, Algorithm::PS256] {
            round_trip(algorithm, &encoding, &from_der);
            round_trip(algorithm, &encoding, &from_jwk);
        }
    }
}

#[test]
fn rsa_public_components_agree_between_private_and_public_key() {
    let key_pair = rsa_key_pair(&rsa_pkcs1()).unwrap();
    let from_private = rsa_components_from_private_key(&rsa_pkcs1()).unwrap();
    let from_public = rsa_components_from_public_key(key_pair.public().as_ref()).unwrap();
    assert_eq!(from_private, from_public);
    assert_eq!(from_private.1, [0x01, 0x00, 0x01]);
    assert_eq!(from_private.0.len(), 256);
    assert!(rsa_components_from_public_key(&rsa_pkcs1()).is_err());
    assert!(rsa_components_from_public_key(&[]).is_err());
}

#[test]
fn rsa_components_with_a_leading_zero_still_verify() {
    install();
    let (n, e) = rsa_components_from_private_key(&rsa_pkcs8()).unwrap();
    let padded_n = [&[0u8][..], &n[..]].concat();
    let decoding = DecodingKey::from_rsa_raw_components(&padded_n, &e);
    round_trip(Algorithm::RS256, &EncodingKey::from_rsa_der(&rsa_pkcs8()), &decoding);
}

#[test]
fn mismatched_algorithm_or_key_is_an_error() {
    install();
    let hmac = EncodingKey::from_secret(b"secret");
    let ed = EncodingKey::from_ed_der(&ed25519_pkcs8_v2());
    let ec = EncodingKey::from_ec_der(&es256_pkcs8());
    // A key of another family, straight through the factory (`encode` checks this too).
    for (algorithm, key) in
        [(Algorithm::ES256, &hmac), (Algorithm::HS256, &ed), (Algorithm::EdDSA, &ec)]
    {
        assert!((PROVIDER.signer_factory)(&algorithm, key).is_err());
        assert!(encode(&Header::new(algorithm), &claims(), key).is_err());
    }
    // The right family but the wrong curve, or garbage bytes.
    assert!((PROVIDER.signer_factory)(&Algorithm::ES384, &ec).is_err());
    assert!(
        (PROVIDER.signer_factory)(&Algorithm::RS256, &EncodingKey::from_rsa_der(b"x")).is_err()
    );

    // A token signed with HS256 offered to an Ed25519 public key, and the reverse.
    let hs_token = encode(&Header::new(Algorithm::HS256), &claims(), &hmac).unwrap();
    let ed_public = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode([7u8; 32])).unwrap();
    assert!(decode::<Claims>(&hs_token, &ed_public, &Validation::new(Algorithm::HS256)).is_err());
    assert!((PROVIDER.verifier_factory)(&Algorithm::HS256, &ed_public).is_err());
    let ed_token = encode(&Header::new(Algorithm::EdDSA), &claims(), &ed).unwrap();
    let secret = DecodingKey::from_secret(b"secret");
    assert!(decode::<Claims>(&ed_token, &secret, &Validation::new(Algorithm::EdDSA)).is_err());
    // RSA components are only valid for RSA algorithms.
    let components = DecodingKey::from_rsa_raw_components(&[1; 256], &[1, 0, 1]);
    assert!((PROVIDER.verifier_factory)(&Algorithm::ES256, &components).is_err());
    // A public key of the wrong length for its curve fails when loaded.
    let short = DecodingKey::from_ec_der(&[4; 33]);
    assert_eq!(
        (PROVIDER.verifier_factory)(&Algorithm::ES256, &short).err().unwrap().kind(),
        &ErrorKind::InvalidEcdsaKey
    );
}

#[test]
fn digests_and_jwk_thumbprints_work() {
    install();
    let sha256 = compute_digest(b"abc", ThumbprintHash::SHA256).unwrap();
    assert_eq!(sha256, crate::crypto::sha256(b"abc"));
    assert_eq!(compute_digest(b"abc", ThumbprintHash::SHA384).unwrap().len(), 48);
    assert_eq!(compute_digest(b"abc", ThumbprintHash::SHA512).unwrap().len(), 64);
    let encoding = EncodingKey::from_ec_der(&es256_pkcs8());
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap().len(), 43);
}

#[test]
fn install_is_idempotent_across_threads() {
    let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(install)).collect();
    for thread in threads {
        thread.join().unwrap();
    }
    install();
    assert!(PROVIDER.install_default().is_err_and(|existing| std::ptr::eq(existing, &PROVIDER)));
}
