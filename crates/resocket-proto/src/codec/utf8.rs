//! UTF-8 checked piece by piece, for a text message that arrives in fragments or in reads: a
//! bad byte fails the message when it arrives (RFC 6455, 8.1: "fail fast"), and a code point
//! split between two pieces is fine.

use std::str::Utf8Error;

use tungstenite::Error as WsError;

/// The state of a UTF-8 check over pieces: the start of a code point cut at the end of the last
/// piece, if any.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Utf8Check {
    carry: [u8; 4],
    carried: u8,
    /// Bytes fed so far, for error positions that do not depend on how the text was cut.
    fed: usize,
}

impl Utf8Check {
    /// Checks the next piece of the text.
    ///
    /// # Errors
    ///
    /// [`WsError::Utf8`] at a byte that no continuation can make valid.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), WsError> {
        if self.carried > 0 {
            let have = usize::from(self.carried);
            let take = (sequence_len(self.carry[0]) - have).min(bytes.len());
            self.carry[have..have + take].copy_from_slice(&bytes[..take]);
            self.carried += take as u8;
            self.fed += take;
            bytes = &bytes[take..];
            let at = self.fed - usize::from(self.carried);
            match std::str::from_utf8(&self.carry[..usize::from(self.carried)]) {
                Ok(_) => self.carried = 0,
                // Still cut: `bytes` is used up.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(e) => return Err(utf8_error(e, at)),
            }
        }
        let at = self.fed;
        self.fed += bytes.len();
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let cut = &bytes[e.valid_up_to()..];
                self.carry[..cut.len()].copy_from_slice(cut);
                self.carried = cut.len() as u8;
                Ok(())
            }
            Err(e) => Err(utf8_error(e, at)),
        }
    }

    /// Checks that the text does not end inside a code point.
    ///
    /// # Errors
    ///
    /// [`WsError::Utf8`] when it does.
    pub(super) fn finish(&self) -> Result<(), WsError> {
        if self.carried == 0 {
            Ok(())
        } else {
            let at = self.fed - usize::from(self.carried);
            Err(WsError::Utf8(format!(
                "incomplete utf-8 byte sequence from index {at}"
            )))
        }
    }
}

/// The error for invalid UTF-8 in a piece that starts at byte `at` of the text, worded as
/// `str::from_utf8`'s own.
pub(super) fn utf8_error(e: Utf8Error, at: usize) -> WsError {
    let index = at + e.valid_up_to();
    WsError::Utf8(match e.error_len() {
        Some(len) => format!("invalid utf-8 sequence of {len} bytes from index {index}"),
        None => format!("incomplete utf-8 byte sequence from index {index}"),
    })
}

/// The length of the sequence a leading byte starts; only called on a byte that
/// `str::from_utf8` called the valid start of a cut sequence (so 2 to 4).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_in_pieces(text: &[u8], cuts: &[usize]) -> Result<(), WsError> {
        let mut check = Utf8Check::default();
        let mut at = 0;
        for &cut in cuts.iter().chain([&text.len()]) {
            check.feed(&text[at..cut])?;
            at = cut;
        }
        check.finish()
    }

    #[test]
    fn valid_text_passes_however_it_is_cut() {
        let text = "aé€𝄞z".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                check_in_pieces(text, &[a, b]).unwrap();
            }
        }
        // Byte by byte.
        check_in_pieces(text, &(1..text.len()).collect::<Vec<_>>()).unwrap();
    }

    #[test]
    fn invalid_text_fails_at_the_piece_that_breaks_it() {
        // U+110000 (past the last code point), cut after its first byte.
        let mut check = Utf8Check::default();
        check.feed(b"ok \xF4").unwrap();
        assert!(check.feed(b"\x90\x80\x80 more").is_err());
        // A cut sequence that the next piece does not continue.
        let mut check = Utf8Check::default();
        check.feed(b"\xE2\x82").unwrap();
        assert!(check.feed(b"(").is_err());
        // Cut at the very end.
        let mut check = Utf8Check::default();
        check.feed(b"\xE2\x82").unwrap();
        assert!(check.finish().is_err());
    }
}
