//! GPT-2's pre-tokenizer: the regular expression
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! written out by hand as the matcher a backtracking regex engine would run, alternatives tried in
//! order at each position (leftmost-first), so its pieces are exactly tiktoken's. BPE merges never
//! cross a piece boundary. The alternatives:
//!
//! 1. an English contraction suffix (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`; case-sensitive);
//! 2. an optional single space (U+0020) then one or more letters (`\p{L}`);
//! 3. an optional space then one or more numbers (`\p{N}`);
//! 4. an optional space then one or more characters that are none of whitespace, letter, number;
//! 5. `\s+(?!\S)`: a run of whitespace *not followed by a non-space* — the greedy run backs off by
//!    one character when more text follows, leaving its last space to prefix the next word
//!    (that is how `"a  b"` becomes `a`, ` `, ` b`); at the end of the text it takes the whole run;
//! 6. `\s+` (a single whitespace character before text, e.g. `"\n"` before a word).
//!
//! `\p{L}` and `\p{N}` are Unicode general categories. Their tables come from `regex-syntax`, the
//! crate whose tables the regex engines in tiktoken use, so both sides agree on every code point
//! of the same Unicode version; `\s` is the White_Space property (`char::is_whitespace`).

use std::sync::OnceLock;

/// Character classes of the pattern.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

struct Tables {
    letters: Vec<(u32, u32)>,
    numbers: Vec<(u32, u32)>,
    ascii: [Class; 128],
}

fn unicode_ranges(class: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new()
        .parse(class)
        .expect("a valid Unicode class");
    match hir.kind() {
        regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => unreachable!("{class} parsed to {other:?}"),
    }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let letters = unicode_ranges(r"\p{L}");
        let numbers = unicode_ranges(r"\p{N}");
        let mut ascii = [Class::Other; 128];
        for (i, slot) in ascii.iter_mut().enumerate() {
            *slot = classify_slow(i as u32, &letters, &numbers);
        }
        Tables {
            letters,
            numbers,
            ascii,
        }
    })
}

fn in_ranges(cp: u32, ranges: &[(u32, u32)]) -> bool {
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn classify_slow(cp: u32, letters: &[(u32, u32)], numbers: &[(u32, u32)]) -> Class {
    let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
    if c.is_whitespace() {
        Class::Space
    } else if in_ranges(cp, letters) {
        Class::Letter
    } else if in_ranges(cp, numbers) {
        Class::Number
    } else {
        Class::Other
    }
}

#[inline]
fn classify(c: char) -> Class {
    let t = tables();
    let cp = c as u32;
    if cp < 128 {
        t.ascii[cp as usize]
    } else {
        classify_slow(cp, &t.letters, &t.numbers)
    }
}

/// Splits `text` into GPT-2 pre-tokens, calling `piece` with each (in order; they concatenate
/// back to `text`).
pub fn pre_tokenize<'t>(text: &'t str, mut piece: impl FnMut(&'t str)) {
    let mut i = 0;
    while i < text.len() {
        let end = match_at(text, i);
        debug_assert!(end > i);
        piece(&text[i..end]);
        i = end;
    }
}

/// Collects the pre-tokens of `text`.
pub fn pre_tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    pre_tokenize(text, |p| out.push(p));
    out
}

/// The end (byte offset) of the pattern's match starting at byte `i`.
fn match_at(text: &str, i: usize) -> usize {
    let rest = &text[i..];
    let mut chars = rest.chars();
    let c = chars.next().expect("i < len");

    // 1. contractions
    if c == '\'' {
        let tail = &rest[1..];
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if tail.starts_with(suffix) {
                return i + 1 + suffix.len();
            }
        }
    }

    // 2–4. an optional space, then a run of one class.
    let (start, first) = if c == ' ' {
        match chars.next() {
            Some(n) => (i + 1, n),
            None => (i, c),
        }
    } else {
        (i, c)
    };
    let class = classify(first);
    if class != Class::Space && (start > i || c != ' ') {
        let mut end = start + first.len_utf8();
        for ch in text[end..].chars() {
            if classify(ch) != class {
                break;
            }
            end += ch.len_utf8();
        }
        return end;
    }

    // 5–6. whitespace.
    let mut end = i;
    let mut last_len = 0;
    let mut count = 0;
    for ch in rest.chars() {
        if !ch.is_whitespace() {
            break;
        }
        end += ch.len_utf8();
        last_len = ch.len_utf8();
        count += 1;
    }
    if end == text.len() || count == 1 {
        end // 5 at the end of the text, or 6 for a single character
    } else {
        end - last_len // 5: leave the last whitespace character for the next piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_gpt2() {
        assert_eq!(
            pre_tokens("Hello, world!"),
            vec!["Hello", ",", " world", "!"]
        );
        assert_eq!(
            pre_tokens("I'm here, they'll go"),
            vec!["I", "'m", " here", ",", " they", "'ll", " go"]
        );
        assert_eq!(pre_tokens("a  b"), vec!["a", " ", " b"]);
        assert_eq!(pre_tokens("a\n\nb"), vec!["a", "\n", "\n", "b"]);
        assert_eq!(pre_tokens("end   "), vec!["end", "   "]);
        assert_eq!(pre_tokens(" 123abc"), vec![" 123", "abc"]);
        assert_eq!(pre_tokens("x ?!"), vec!["x", " ?!"]);
        assert_eq!(pre_tokens("''s"), vec!["''", "s"]);
        assert_eq!(pre_tokens("日本語 テスト"), vec!["日本語", " テスト"]);
        assert_eq!(pre_tokens(" "), vec![" "]);
        assert_eq!(pre_tokens("\r\n"), vec!["\r\n"]);
    }
}
