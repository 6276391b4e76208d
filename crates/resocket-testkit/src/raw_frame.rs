//! Server frames as raw bytes, for tests that write what a WebSocket library would refuse to:
//! fragments in any order, reserved bits, unknown opcodes, frames glued to the upgrade response.

/// One unmasked server-to-client frame: the FIN bit, the 4-bit `opcode`, and `payload` with the
/// shortest length encoding RFC 6455 allows. Any opcode goes, valid or not.
pub fn raw_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (opcode & 0x0F)];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_length_encoding_has_its_header() {
        assert_eq!(raw_frame(true, 0x2, b"ab"), [0x82, 2, b'a', b'b']);
        assert_eq!(raw_frame(false, 0x1, &[0; 126])[..4], [0x01, 126, 0, 126]);
        assert_eq!(
            raw_frame(true, 0x0, &[0; 65_536])[..10],
            [0x80, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }
}
