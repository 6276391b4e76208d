//! Room patterns: `*` matches any run of characters, everything else matches itself.

/// Whether `room` matches `pattern`, where `*` stands for any (possibly empty) run of characters.
///
/// Iterative with one backtrack point, so a hostile pattern cannot make it exponential.
pub(crate) fn matches(pattern: &str, room: &str) -> bool {
    let (p, r) = (pattern.as_bytes(), room.as_bytes());
    let (mut pi, mut ri) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ri < r.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ri));
            pi += 1;
        } else if pi < p.len() && p[pi] == r[ri] {
            pi += 1;
            ri += 1;
        } else if let Some((sp, sr)) = star {
            pi = sp + 1;
            ri = sr + 1;
            star = Some((sp, sr + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether any pattern in `patterns` matches `room`.
pub(crate) fn any_matches(patterns: &[String], room: &str) -> bool {
    patterns.iter().any(|p| matches(p, room))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_runs() {
        assert!(matches("news.*", "news.sport"));
        assert!(matches("news.*", "news."));
        assert!(!matches("news.*", "news"));
        assert!(!matches("news.*", "weather.news.x"));
        assert!(matches("*", ""));
        assert!(matches("*.x.*", "a.x.b"));
        assert!(matches("a*b*c", "aXbYbc"));
        assert!(!matches("a*b*c", "aXbYb"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
    }
}
