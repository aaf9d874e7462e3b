//! Voucher codes (seed 000) and the two keys that keep them out of a database dump.
//!
//! A code is 12 digits: 11 from the operating system's CSPRNG (the first never 0, so a
//! code never loses a digit in a spreadsheet) and a Damm check digit, which catches every
//! single-digit typo and every swap of two adjacent digits before any lookup. That leaves
//! 9 × 10¹⁰ well-formed codes (about 36.4 bits): ARCHITECTURE.md ("Vouchers") sizes the
//! guessing budget from it.
//!
//! The database holds, per code, `HMAC-SHA256(lookup key, code)` (the lookup, unique)
//! and the code sealed with XChaCha20-Poly1305 under the seal key, with the voucher's id as
//! associated data (so the printable PDF can be made again later, and a sealed code cannot
//! be moved to another row). Both keys live in files in the data directory, never in the
//! database: a dump alone reveals no usable code. The Damm table and the file handling
//! are ours (a dozen lines each); the HMAC and the AEAD come from RustCrypto's crates.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng as _, RngCore as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::tokens::keys::hex;

/// The number of digits of a code.
pub const CODE_LEN: usize = 12;
/// How many well-formed codes exist: 9 × 10¹⁰ (first digit 1..=9, ten free digits, a check digit).
pub const CODE_SPACE: f64 = 9e10;

/// The lookup key's file in the data directory.
pub const LOOKUP_KEY_FILE: &str = "voucher-lookup.key";
/// The seal key's file in the data directory.
pub const SEAL_KEY_FILE: &str = "voucher-seal.key";

/// Damm's quasigroup of order 10 (weakly totally anti-symmetric): the check digit that
/// makes the running interim digit 0 catches all single errors and adjacent transpositions.
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

fn damm(digits: impl Iterator<Item = u8>) -> u8 {
    digits.fold(0u8, |interim, d| DAMM.get(usize::from(interim)).and_then(|row| row.get(usize::from(d))).copied().unwrap_or(0))
}

/// Why a typed code is refused before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    Length,
    Characters,
    CheckDigit,
}

impl Malformed {
    pub fn message(self) -> &'static str {
        match self {
            Malformed::Length => "a voucher code has 12 digits",
            Malformed::Characters => "a voucher code has digits only",
            Malformed::CheckDigit => "this is not a voucher code: a digit is mistyped (the last digit checks the others)",
        }
    }
}

/// The code as typed, with spaces and dashes between groups allowed, as its 12 digits.
pub fn parse(typed: &str) -> Result<String, Malformed> {
    if typed.len() > 64 {
        return Err(Malformed::Length);
    }
    let code: String = typed.chars().filter(|c| !matches!(c, ' ' | '-' | '\u{a0}')).collect();
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed::Characters);
    }
    if code.len() != CODE_LEN || code.starts_with('0') {
        return Err(Malformed::Length);
    }
    if damm(code.bytes().map(|b| b - b'0')) != 0 {
        return Err(Malformed::CheckDigit);
    }
    Ok(code)
}

/// A new random code.
pub fn generate() -> String {
    let mut digits = Vec::with_capacity(CODE_LEN);
    digits.push(OsRng.gen_range(1..=9u8));
    while digits.len() < CODE_LEN - 1 {
        digits.push(OsRng.gen_range(0..=9u8));
    }
    digits.push(damm(digits.iter().copied()));
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// The two voucher keys, loaded from (or made in) the data directory.
pub struct VoucherKeys {
    lookup: Zeroizing<[u8; 32]>,
    seal: XChaCha20Poly1305,
}

impl VoucherKeys {
    /// Loads both keys from `dir`, making each one that does not exist yet (mode 600). A
    /// key file readable by others, or not 64 hex digits, stops the start.
    pub fn load_or_create(dir: &Path) -> Result<VoucherKeys, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating the data directory {}: {e}", dir.display()))?;
        let lookup = key_file(&dir.join(LOOKUP_KEY_FILE))?;
        let seal = key_file(&dir.join(SEAL_KEY_FILE))?;
        Ok(VoucherKeys { lookup, seal: XChaCha20Poly1305::new((&*seal).into()) })
    }

    /// The lookup value of a code, as stored (`vouchers.code_mac`).
    pub fn mac(&self, code: &str) -> String {
        hex(&self.tag(b"tokengate voucher code\0", code.as_bytes()))
    }

    /// Names this pair of keys without revealing them (`voucher_keys.check`): a start with
    /// other keys than the vouchers were made with is refused, not silently broken.
    pub fn check_value(&self) -> String {
        hex(&self.tag(b"tokengate voucher key check\0", &[])[..16])
    }

    /// HMAC-SHA256 under the lookup key of `label` then `data`. Each use has its own label
    /// (the console's CSRF tokens use it too: a key every replica already shares).
    pub fn tag(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&*self.lookup) else { return [0; 32] };
        mac.update(label);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The code sealed for voucher `id`: hex of nonce (24 bytes) and ciphertext.
    pub fn seal(&self, id: &str, code: &str) -> Result<String, String> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .seal
            .encrypt(&XNonce::from(nonce), Payload { msg: code.as_bytes(), aad: id.as_bytes() })
            .map_err(|_| "sealing a voucher code failed".to_owned())?;
        Ok(format!("{}{}", hex(&nonce), hex(&sealed)))
    }

    /// The code of voucher `id` back from its sealed form.
    pub fn open(&self, id: &str, sealed_hex: &str) -> Option<String> {
        let bytes = unhex(sealed_hex)?;
        let (nonce, sealed) = (bytes.get(..24)?, bytes.get(24..)?);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let code = self.seal.decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: id.as_bytes() }).ok()?;
        String::from_utf8(code).ok()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// Reads a 32-byte key (64 hex digits) from `path`, or makes one there with mode 600.
fn key_file(path: &PathBuf) -> Result<Zeroizing<[u8; 32]>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "{} is readable by other users (mode {:o}); run `chmod 600 {}` (it holds a voucher key)",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    ));
                }
            }
            let bytes = unhex(text.trim()).filter(|b| b.len() == 32).ok_or_else(|| {
                format!("{} must hold 64 hexadecimal digits (a 32-byte key); restore it from your backup", path.display())
            })?;
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut *key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
            file.write_all(format!("{}\n", hex(&*key)).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "made a new voucher key (mode 600); back it up with the database");
            Ok(key)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_well_formed_and_differ() {
        let codes: Vec<String> = (0..1000).map(|_| generate()).collect();
        for c in &codes {
            assert_eq!(c.len(), 12);
            assert!(!c.starts_with('0'));
            assert_eq!(parse(c).as_deref(), Ok(c.as_str()));
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn every_single_typo_and_adjacent_swap_is_caught() {
        for _ in 0..50 {
            let code = generate();
            let digits: Vec<u8> = code.bytes().collect();
            for i in 0..CODE_LEN {
                for d in b'0'..=b'9' {
                    if d == digits[i] {
                        continue;
                    }
                    let mut typo = digits.clone();
                    typo[i] = d;
                    let typo = String::from_utf8(typo).unwrap();
                    assert!(parse(&typo).is_err(), "{code} -> {typo}");
                }
                if i + 1 < CODE_LEN && digits[i] != digits[i + 1] {
                    let mut swapped = digits.clone();
                    swapped.swap(i, i + 1);
                    assert!(parse(&String::from_utf8(swapped).unwrap()).is_err());
                }
            }
        }
    }

    #[test]
    fn malformed_codes() {
        let good = generate();
        assert_eq!(parse(&format!("{} {} {}", &good[..4], &good[4..8], &good[8..])).as_deref(), Ok(good.as_str()));
        assert_eq!(parse("12345"), Err(Malformed::Length));
        assert_eq!(parse("1234567890123"), Err(Malformed::Length));
        assert_eq!(parse("12345678901a"), Err(Malformed::Characters));
        assert_eq!(parse("１２３４５６７８９０１２"), Err(Malformed::Characters));
        assert_eq!(parse(""), Err(Malformed::Length));
        assert_eq!(parse(&"1".repeat(100)), Err(Malformed::Length));
    }

    #[test]
    fn keys_are_made_once_with_mode_600_and_seal_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let a = VoucherKeys::load_or_create(dir.path()).unwrap();
        let b = VoucherKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(a.mac("100123456789"), b.mac("100123456789"));
        assert_eq!(a.check_value(), b.check_value());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(LOOKUP_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(dir.path().join(SEAL_KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(VoucherKeys::load_or_create(dir.path()).err().unwrap().contains("chmod 600"));
        }
        let sealed = a.seal("v1", "100123456789").unwrap();
        assert!(!sealed.contains("100123456789"));
        assert_eq!(a.open("v1", &sealed).as_deref(), Some("100123456789"));
        // Moved to another row, it does not open.
        assert_eq!(a.open("v2", &sealed), None);
        let other = tempfile::tempdir().unwrap();
        let c = VoucherKeys::load_or_create(other.path()).unwrap();
        assert_ne!(a.mac("100123456789"), c.mac("100123456789"));
        assert_eq!(c.open("v1", &sealed), None);
    }
}
