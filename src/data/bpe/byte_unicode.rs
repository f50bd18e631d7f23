//! GPT-2's byte ↔ unicode table.
//!
//! Byte-level BPE works on bytes, but OpenAI stored the vocabulary as JSON text. To make every byte
//! a printable character, GPT-2 maps the 188 bytes that are already printable and not a space
//! (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) to the characters with the same code point, and the other 68
//! bytes (control characters, space, …) to `U+0100` onwards in byte order. So the space byte 0x20
//! becomes `Ġ` (U+0120) and newline 0x0A becomes `Ċ` (U+010A) — the `Ġ` seen all over GPT-2's
//! vocabulary.

/// `BYTE_TO_CHAR[b]` is the character GPT-2 writes for byte `b`.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are valid chars");
            next += 1;
            c
        };
    }
    table
}

/// The bytes in GPT-2's rank order: the printable bytes first (in byte order), then the others —
/// the order of the first 256 entries of `encoder.json` (tiktoken's `rank_to_intbyte`).
pub fn bytes_in_rank_order() -> Vec<u8> {
    let printable = (0..=255u8).filter(|&b| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF));
    let others = (0..=255u8).filter(|&b| !matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF));
    printable.chain(others).collect()
}

/// Decodes a token written in GPT-2's alphabet back to its bytes; `None` if it contains a
/// character outside the table.
pub fn token_to_bytes(token: &str, table: &[char; 256]) -> Option<Vec<u8>> {
    token
        .chars()
        .map(|c| {
            let cp = c as u32;
            if cp < 256 && table[cp as usize] == c {
                Some(cp as u8)
            } else if (256..256 + 68).contains(&cp) {
                table.iter().position(|&t| t == c).map(|b| b as u8)
            } else {
                None
            }
        })
        .collect()
}

/// Writes bytes in GPT-2's alphabet (the inverse of [`token_to_bytes`]).
pub fn bytes_to_token(bytes: &[u8], table: &[char; 256]) -> String {
    bytes.iter().map(|&b| table[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_with_gpt2s_known_entries() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        let mut seen = std::collections::HashSet::new();
        assert!(t.iter().all(|c| seen.insert(*c)));
        for b in 0..=255u8 {
            let s = bytes_to_token(&[b], &t);
            assert_eq!(token_to_bytes(&s, &t), Some(vec![b]));
        }
        assert_eq!(bytes_in_rank_order()[0], b'!');
        assert_eq!(bytes_in_rank_order().len(), 256);
    }
}
