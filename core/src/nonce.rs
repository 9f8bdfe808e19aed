//! Nonces and timestamps for signed messages.

use rand_core::CryptoRng;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of [`nonce_str`]'s output; WeChat Pay accepts up to 32 characters.
pub const NONCE_LEN: usize = 32;

/// A 32-character random string of `[0-9A-Za-z]` for `nonce_str` / `nonceStr`.
///
/// Characters are drawn by rejection sampling (bytes ≥ 248 = 4 × 62 are discarded), so every
/// character is uniform: no modulo bias.
pub fn nonce_str<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut out = String::with_capacity(NONCE_LEN);
    let mut buf = [0u8; 48];
    while out.len() < NONCE_LEN {
        rng.fill_bytes(&mut buf);
        for &b in &buf {
            if b < 248 && out.len() < NONCE_LEN {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

/// The decimal seconds string WeChat Pay expects for `timestamp` / `timeStamp`.
#[must_use]
pub fn timestamp(now: u64) -> String {
    now.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn nonce_has_the_right_alphabet_and_length_and_is_unique() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let n = nonce_str(&mut rng);
            assert_eq!(n.len(), NONCE_LEN);
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn nonce_characters_are_roughly_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut counts = [0u32; 62];
        for _ in 0..3000 {
            for b in nonce_str(&mut rng).bytes() {
                let i = ALPHABET.iter().position(|&a| a == b).expect("alphabet");
                counts[i] += 1;
            }
        }
        // 96_000 draws, 1548 expected per symbol; a modulo-biased generator over bytes would put
        // the first 8 symbols ~25% higher.
        let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(min > Some(1350) && max < Some(1750), "{counts:?}");
    }

    #[test]
    fn timestamp_is_decimal_seconds() {
        assert_eq!(timestamp(1_614_739_000), "1614739000");
    }
}
