//! Base58 (Bitcoin alphabet) for the hot path: every accepted batch decodes
//! a 64-byte signature and encodes a 32-byte hash. Working in base 58^5
//! with 32-bit limbs is several times faster than the byte-at-a-time
//! arithmetic of the `bs58` crate, whose output it matches exactly
//! (tested against it), leading-zero rule included.

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// 58^5 < 2^32: five digits per division or multiplication step.
const BASE5: u64 = 58 * 58 * 58 * 58 * 58;

const fn digit_table() -> [u8; 128] {
    let mut t = [0xFFu8; 128];
    let mut i = 0;
    while i < 58 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
}
const DIGITS: [u8; 128] = digit_table();

/// Base58 text of `input`: one `1` per leading zero byte, then the digits
/// of the remaining big-endian number.
pub fn encode(input: &[u8]) -> String {
    let zeros = input.iter().take_while(|&&b| b == 0).count();
    let rest = &input[zeros..];
    // Big-endian u32 limbs (front-padded: the value is unchanged).
    let pad = (4 - rest.len() % 4) % 4;
    let mut limbs: Vec<u32> = std::iter::repeat_n(0u8, pad)
        .chain(rest.iter().copied())
        .collect::<Vec<u8>>()
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut digits: Vec<u8> = Vec::with_capacity(rest.len() * 138 / 100 + 5);
    let mut start = 0;
    while start < limbs.len() {
        let mut rem: u64 = 0;
        for limb in &mut limbs[start..] {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / BASE5) as u32;
            rem = cur % BASE5;
        }
        for _ in 0..5 {
            digits.push((rem % 58) as u8);
            rem /= 58;
        }
        while start < limbs.len() && limbs[start] == 0 {
            start += 1;
        }
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char));
    out
}

/// Whether every character of `s` is a base58 digit.
pub fn is_digits(s: &str) -> bool {
    s.bytes()
        .all(|b| DIGITS.get(b as usize).is_some_and(|&d| d != 0xFF))
}

/// The longest base58 text of an `n`-byte value (leading zero bytes
/// included, each one `1`): `ceil(n · log 256 / log 58)`.
pub const fn max_encoded_len(n: usize) -> usize {
    (n * 1_366).div_ceil(1_000)
}

/// Decodes base58 text of exactly `N` bytes. The length is checked before
/// any arithmetic, so the cost is bounded by `N`, not by the input (base58
/// decoding is quadratic in its length).
pub fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.is_empty() || text.len() > max_encoded_len(N) {
        return None;
    }
    decode(text)?.try_into().ok()
}

/// Decodes base58 text; `None` for a character outside the alphabet.
/// Quadratic in the length: callers bound it first ([`decode_fixed`]).
fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let zeros = bytes.iter().take_while(|&&b| b == b'1').count();
    // Little-endian u32 limbs of the number so far.
    let mut limbs: Vec<u32> = Vec::with_capacity(bytes.len() / 5 + 1);
    for group in bytes[zeros..].chunks(5) {
        let mut value: u64 = 0;
        let mut mult: u64 = 1;
        for &c in group {
            let d = *DIGITS.get(c as usize)?;
            if d == 0xFF {
                return None;
            }
            value = value * 58 + u64::from(d);
            mult *= 58;
        }
        let mut carry = value;
        for limb in &mut limbs {
            let cur = u64::from(*limb) * mult + carry;
            *limb = cur as u32;
            carry = cur >> 32;
        }
        while carry > 0 {
            limbs.push(carry as u32);
            carry >>= 32;
        }
    }
    let mut out = vec![0u8; zeros];
    let mut number: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let lead = number.iter().take_while(|&&b| b == 0).count();
    out.extend(number.drain(lead..));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_bs58_crate() {
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % 70) as usize;
            let zeros = if round % 5 == 0 {
                (next() % 4) as usize
            } else {
                0
            };
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for b in input.iter_mut().take(zeros) {
                *b = 0;
            }
            let ours = encode(&input);
            assert_eq!(ours, bs58::encode(&input).into_string(), "{input:?}");
            assert_eq!(decode(&ours).as_deref(), Some(&input[..]), "{ours}");
        }
        for bad in ["0", "O", "I", "l", "abc!", "é"] {
            assert_eq!(decode(bad), None, "{bad}");
            assert!(bs58::decode(bad).into_vec().is_err());
        }
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("111"), Some(vec![0, 0, 0]));
    }

    #[test]
    fn fixed_size_decoding_checks_the_length_first() {
        assert_eq!(max_encoded_len(32), 44);
        assert_eq!(max_encoded_len(64), 88);
        assert_eq!(max_encoded_len(19), 26);
        for n in [0u8, 1, 0x80, 0xFF] {
            let bytes = [n; 32];
            let text = encode(&bytes);
            assert!(text.len() <= 44, "{text}");
            assert_eq!(decode_fixed::<32>(&text), Some(bytes));
            assert_eq!(decode_fixed::<64>(&text), None, "wrong size");
        }
        assert_eq!(decode_fixed::<32>(""), None);
        // Too long to be 32 bytes: refused without decoding.
        assert_eq!(decode_fixed::<32>(&"2".repeat(45)), None);
        assert_eq!(decode_fixed::<32>(&"z".repeat(800_000)), None);
        assert!(is_digits("123abcXYZ"));
        assert!(!is_digits("0OIl"));
        assert!(!is_digits("abc!"));
    }
}
