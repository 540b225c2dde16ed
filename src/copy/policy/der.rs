//! The little DER the signature policy reads and writes by hand: one
//! element (one-byte tag, definite length) at a time.

/// One DER element of `input` with a one-byte tag: its tag, its content
/// and what follows it.
pub(super) fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| a << 8 | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A DER element of `tag` around `content`.
pub(super) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_round_trip_with_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![5u8; len];
            let der = encode(0x04, &content);
            assert_eq!(tlv(&der), Some((0x04, &content[..], &[][..])), "{len}");
            assert_eq!(tlv(&der[..der.len() - 1]), None, "{len}: truncated");
        }
        assert_eq!(tlv(&[0x04, 0x80]), None, "indefinite length");
        assert_eq!(
            tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]),
            None,
            "over four length bytes"
        );
    }
}
