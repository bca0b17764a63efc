//! The few DER shapes a token's key needs in TLS: ECDSA signatures (a token returns r‖s,
//! TLS wants a DER SEQUENCE), public keys (for the certificate check) and PKCS#1 DigestInfo.

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(&significant);
    }
    out.extend_from_slice(content);
    out
}

/// An unsigned big-endian number as a DER INTEGER: no leading zero bytes but one that keeps
/// the high bit from reading as a sign.
fn unsigned_integer(value: &[u8]) -> Vec<u8> {
    let digits = value.iter().copied().skip_while(|b| *b == 0);
    let mut content = Vec::with_capacity(value.len() + 1);
    content.extend(digits);
    if content.first().is_none_or(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(INTEGER, &content)
}

/// A PKCS#11 ECDSA signature (r‖s, each half the same length) as the DER `Ecdsa-Sig-Value`.
pub(crate) fn ecdsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut content = unsigned_integer(r);
    content.extend(unsigned_integer(s));
    Some(tlv(SEQUENCE, &content))
}

/// The uncompressed point of `CKA_EC_POINT`: PKCS#11 says a DER OCTET STRING, some tokens
/// give the bare point.
pub(crate) fn ec_point(attribute: &[u8]) -> Option<&[u8]> {
    match attribute {
        [0x04, rest @ ..] if matches!(rest.len(), 64 | 96 | 132) => Some(attribute),
        [OCTET_STRING, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        [OCTET_STRING, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        _ => None,
    }
}

/// The `RSAPublicKey` of RFC 8017 from `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`.
pub(crate) fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut content = unsigned_integer(modulus);
    content.extend(unsigned_integer(exponent));
    tlv(SEQUENCE, &content)
}

/// `DigestInfo` prefixes (RFC 8017 §9.2, note 1) for RSASSA-PKCS1-v1_5 with a raw `CKM_RSA_PKCS`.
pub(crate) const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
pub(crate) const SHA384_DIGEST_INFO: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
pub(crate) const SHA512_DIGEST_INFO: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// `CKA_EC_PARAMS` of the curves TLS signs with (named-curve OIDs, DER).
pub(crate) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn signature_halves_become_minimal_positive_integers() {
        // r has its high bit set (a zero byte keeps it positive); s has leading zeros to drop.
        let mut raw = vec![0x80; 32];
        raw.extend([0, 0, 0x01]);
        raw.extend([0x22; 29]);
        let der = ecdsa_signature(&raw).unwrap();
        assert_eq!(&der[..2], &[0x30, 2 + 33 + 2 + 30]);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert_eq!(&der[37..40], &[0x02, 30, 0x01]);
        assert_eq!(der.len(), 2 + 35 + 32);
        assert_eq!(ecdsa_signature(&[1, 2, 3]), None);
        // An all-zero half is the integer zero, not an empty one.
        assert_eq!(
            ecdsa_signature(&[0, 0, 0, 1]).unwrap(),
            vec![0x30, 6, 2, 1, 0, 2, 1, 1]
        );
    }

    #[test]
    fn long_contents_take_a_long_length() {
        let modulus = vec![0xc1; 256];
        let key = rsa_public_key(&modulus, &[0x01, 0x00, 0x01]);
        // 257 bytes of modulus (a zero byte first) + 5 of exponent, inside SEQUENCE 0x82 len.
        assert_eq!(&key[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert_eq!(&key[4..9], &[0x02, 0x82, 0x01, 0x01, 0x00]);
        assert_eq!(&key[key.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn the_point_is_found_wrapped_or_bare() {
        let mut bare = vec![0x04];
        bare.extend([7; 64]);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend(&bare);
        assert_eq!(ec_point(&wrapped), Some(&bare[..]));
        assert_eq!(ec_point(&bare), Some(&bare[..]));
        let mut p521 = vec![0x04, 0x81, 133, 0x04];
        p521.extend([9; 132]);
        assert_eq!(ec_point(&p521).map(<[u8]>::len), Some(133));
        assert_eq!(ec_point(&[0x04, 5, 1]), None);
    }
}
