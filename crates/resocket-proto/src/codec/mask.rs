//! The payload mask of RFC 6455, 5.3: applied by a client writing, removed by a server reading.

/// XORs `buf` with the repeated 4-byte `key`, eight bytes at a time.
#[inline]
pub(super) fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let [a, b, c, d] = key;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let masked = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ wide;
        word.copy_from_slice(&masked.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key lines up from its first byte.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Below this many bytes a payload is copied, then masked where it landed: both passes stay in
/// the first-level cache, and the fused loop's zeroing cost more than it saved (callgrind, 64 B
/// frames: 235 instructions per frame fused, 179 copied then masked; timed alone, 1 and 4 KiB
/// were faster copied then masked, 8 and 16 KiB the same either way).
const FUSED_FROM: usize = 8 << 10;

/// Appends `src` to `dst`, XOR-ed with the repeated 4-byte `key`. From [`FUSED_FROM`] bytes on,
/// the payload is read once and its masked copy written once, eight bytes at a time.
#[inline]
pub(super) fn copy_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    if src.len() < FUSED_FROM {
        let start = dst.len();
        dst.extend_from_slice(src);
        apply_mask(&mut dst[start..], key);
        return;
    }
    let [a, b, c, d] = key;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let start = dst.len();
    // Zeroing the room first is a store into the (hot) write buffer; without `unsafe` there is
    // no writing into spare capacity, and `extend` from a word iterator does not vectorize.
    dst.resize(start + src.len(), 0);
    let out = &mut dst[start..];
    let mut out_words = out.chunks_exact_mut(8);
    let mut in_words = src.chunks_exact(8);
    for (o, i) in (&mut out_words).zip(&mut in_words) {
        let masked = u64::from_ne_bytes(i.try_into().expect("8 bytes")) ^ wide;
        o.copy_from_slice(&masked.to_ne_bytes());
    }
    for (i, (o, s)) in out_words
        .into_remainder()
        .iter_mut()
        .zip(in_words.remainder())
        .enumerate()
    {
        *o = s ^ key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_copy_is_the_payload_masked_in_place() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [
            0usize, 1, 3, 7, 8, 9, 15, 16, 17, 1000, 1023, 1024, 1025, 1031, 16_387,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut expected = payload.clone();
            apply_mask(&mut expected, key);
            let mut dst = vec![0xEE; 5];
            copy_masked(&mut dst, &payload, key);
            assert_eq!(dst[..5], [0xEE; 5], "length {len}");
            assert_eq!(dst[5..], expected[..], "length {len}");
        }
    }
}
