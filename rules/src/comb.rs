//! Variable-time fixed-base multiplication for signature *verification*.
//!
//! A verifier computes `[S]B - [k]A` where everything is public: the basepoint `B`, the
//! trusted key `A`, the signature's `S` and the hash `k`. Nothing secret flows through it,
//! so it may branch and index on the scalars. That is what makes it fast:
//!
//! - a table per point of `j · 256^i · P` for `i` in 0..32 and `j` in 1..=128 (4096
//!   points, 640 KiB), built once per point;
//! - the scalar recoded into 32 signed base-256 digits in `[-128, 127]`;
//! - the product is then at most 32 additions or subtractions of table entries, no
//!   doublings, and each entry is found by plain indexing.
//!
//! curve25519-dalek's own `EdwardsBasepointTable` (radix 16) needs 64 additions, each
//! behind a constant-time scan of 8 entries, which costs about as much as the addition:
//! right for signing, where the scalar is secret, and twice the work for verifying.
//!
//! Signing never uses this module: the control plane signs through jsonwebtoken.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;

/// Digit positions: 32 bytes of scalar.
const POSITIONS: usize = 32;
/// Multiples kept per position: `|digit| ≤ 128`.
const MULTIPLES: usize = 128;

/// `j · 256^i · P` for every position `i` and multiple `j` (row-major, `j - 1` within a row).
pub(crate) struct CombTable {
    points: Box<[EdwardsPoint]>,
}

impl CombTable {
    /// Builds the table of `p`: 4096 additions, a few milliseconds in Wasm.
    pub(crate) fn new(p: &EdwardsPoint) -> Self {
        let mut points = Vec::with_capacity(POSITIONS * MULTIPLES);
        let mut base = *p;
        for _ in 0..POSITIONS {
            let mut multiple = base;
            for _ in 0..MULTIPLES {
                points.push(multiple);
                multiple += &base;
            }
            // `multiple` is now 129 · base; the next row starts at 256 · base = 2 · (128 · base).
            let last = points.last().copied().unwrap_or(base);
            base = last + last;
        }
        CombTable { points: points.into_boxed_slice() }
    }

    /// The entry for a non-zero digit of position `i`: `|d| · 256^i · P`.
    fn entry(&self, i: usize, d: i16) -> Option<&EdwardsPoint> {
        self.points.get(i * MULTIPLES + usize::from(d.unsigned_abs()).checked_sub(1)?)
    }

    /// Adds `[s]P` to `acc`, where `P` is this table's point. Variable time in `s`.
    pub(crate) fn add_product(&self, acc: &mut EdwardsPoint, s: &Scalar) {
        for (i, d) in signed_radix_256(s).into_iter().enumerate() {
            if let Some(e) = self.entry(i, d) {
                if d > 0 {
                    *acc += e;
                } else {
                    *acc -= e;
                }
            }
        }
    }

    /// `[s]P` alone.
    #[cfg(test)]
    pub(crate) fn mul(&self, s: &Scalar) -> EdwardsPoint {
        use curve25519_dalek::traits::Identity as _;
        let mut acc = EdwardsPoint::identity();
        self.add_product(&mut acc, s);
        acc
    }
}

/// The scalar's 32 little-endian bytes as signed digits `d_i ∈ [-128, 127]` with
/// `s = Σ d_i · 256^i`. A reduced scalar is below 2^253, so its top byte is at most 0x1f
/// and the last carry is always zero: 32 digits are enough.
fn signed_radix_256(s: &Scalar) -> [i16; POSITIONS] {
    let mut digits = [0i16; POSITIONS];
    let mut carry = 0i16;
    for (d, &b) in digits.iter_mut().zip(s.as_bytes()) {
        let v = i16::from(b) + carry;
        carry = (v + 128) >> 8;
        *d = v - (carry << 8);
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;

    fn scalar(seed: u8) -> Scalar {
        let mut wide = [0u8; 64];
        for (i, b) in wide.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(97);
        }
        Scalar::from_bytes_mod_order_wide(&wide)
    }

    #[test]
    fn digits_reconstruct_the_scalar() {
        for s in [Scalar::ZERO, Scalar::ONE, -Scalar::ONE, scalar(1), scalar(2), Scalar::from(0x80u64), Scalar::from(0xffu64)] {
            let digits = signed_radix_256(&s);
            assert!(digits.iter().all(|d| (-128..=127).contains(d)), "{digits:?}");
            let mut back = Scalar::ZERO;
            let mut weight = Scalar::ONE;
            for d in digits {
                let m = Scalar::from(u64::from(d.unsigned_abs()));
                back += if d < 0 { -(m * weight) } else { m * weight };
                weight *= Scalar::from(256u64);
            }
            assert_eq!(back, s);
        }
    }

    #[test]
    fn products_match_dalek() {
        let b = CombTable::new(&ED25519_BASEPOINT_POINT);
        let p = ED25519_BASEPOINT_POINT * scalar(9);
        let t = CombTable::new(&p);
        for s in [Scalar::ZERO, Scalar::ONE, -Scalar::ONE, scalar(3), scalar(4), scalar(5)] {
            assert_eq!(b.mul(&s), ED25519_BASEPOINT_POINT * s);
            assert_eq!(t.mul(&s), p * s);
        }
    }
}
