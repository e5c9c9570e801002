//! The channel-name and pattern rules, by example and by brute force: `glob_match`
//! against a reference NFA, and `covers` against enumeration over small alphabets.

use super::*;

const MAX: usize = 255;

fn p(s: &str) -> Pattern {
    Pattern::parse(s, MAX).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn channel_validation_accepts_good_names() {
    for ok in [
        "a",
        "rooms/lobby",
        "app/user@example.com/inbox",
        "x-y_z.w:v=1+2~3!4$5",
        "A1/B2/C3",
    ] {
        assert_eq!(validate_channel(ok, MAX), Ok(()), "{ok}");
    }
}

#[test]
fn channel_validation_rejects_bad_names() {
    assert_eq!(validate_channel("", MAX), Err(ChannelError::Empty));
    assert_eq!(validate_channel("abcd", 3), Err(ChannelError::TooLong));
    assert_eq!(validate_channel("abc", 3), Ok(()));
    assert_eq!(
        validate_channel("rooms/*", MAX),
        Err(ChannelError::BadWildcard)
    );
    assert_eq!(
        validate_channel("a|b", MAX),
        Err(ChannelError::BadChar('|'))
    );
    assert_eq!(
        validate_channel("a b", MAX),
        Err(ChannelError::BadChar(' '))
    );
    assert_eq!(
        validate_channel("a\tb", MAX),
        Err(ChannelError::BadChar('\t'))
    );
    assert_eq!(
        validate_channel("a\u{0}", MAX),
        Err(ChannelError::BadChar('\u{0}'))
    );
    assert_eq!(
        validate_channel("caf\u{e9}", MAX),
        Err(ChannelError::BadChar('\u{e9}'))
    );
    assert_eq!(
        validate_channel("a#b", MAX),
        Err(ChannelError::BadChar('#'))
    );
    assert_eq!(validate_channel("/a", MAX), Err(ChannelError::BadSlash));
    assert_eq!(validate_channel("a/", MAX), Err(ChannelError::BadSlash));
    assert_eq!(validate_channel("a//b", MAX), Err(ChannelError::BadSlash));
    assert_eq!(validate_channel("/", MAX), Err(ChannelError::BadSlash));
}

#[test]
fn too_long_is_measured_in_bytes() {
    let name = "a".repeat(MAX);
    assert_eq!(validate_channel(&name, MAX), Ok(()));
    let name = "a".repeat(MAX + 1);
    assert_eq!(validate_channel(&name, MAX), Err(ChannelError::TooLong));
    assert_eq!(
        Pattern::parse(&name, MAX).unwrap_err(),
        ChannelError::TooLong
    );
}

#[test]
fn errors_have_messages() {
    for e in [
        ChannelError::Empty,
        ChannelError::TooLong,
        ChannelError::BadChar('|'),
        ChannelError::BadWildcard,
        ChannelError::BadSlash,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn pattern_parse_rules() {
    for ok in [
        "*", "**", "a/**", "rooms/*", "room-*", "a*b/c", "*/*/x", "a**", "a*b*c",
    ] {
        assert!(Pattern::parse(ok, MAX).is_ok(), "{ok}");
    }
    for (bad, err) in [
        ("", ChannelError::Empty),
        ("**/a", ChannelError::BadWildcard),
        ("a/**/b", ChannelError::BadWildcard),
        ("a/***", ChannelError::BadWildcard),
        ("***", ChannelError::BadWildcard),
        ("a**b", ChannelError::BadWildcard),
        ("a/*/", ChannelError::BadSlash),
        ("/*", ChannelError::BadSlash),
        ("*//*", ChannelError::BadSlash),
        ("a|*", ChannelError::BadChar('|')),
        ("a *", ChannelError::BadChar(' ')),
    ] {
        assert_eq!(Pattern::parse(bad, MAX), Err(err), "{bad:?}");
    }
}

#[test]
fn pattern_accessors() {
    assert!(!p("rooms/lobby").is_wildcard());
    assert!(p("rooms/*").is_wildcard());
    assert!(p("**").is_wildcard());
    assert_eq!(p("a/*").as_str(), "a/*");
    assert_eq!(p("a/*").to_string(), "a/*");
    assert!(p("a") < p("b"));
}

#[test]
fn exact_match() {
    let pat = p("rooms/lobby");
    assert!(pat.matches("rooms/lobby"));
    assert!(!pat.matches("rooms/lobby2"));
    assert!(!pat.matches("rooms"));
}

#[test]
fn star_matches_within_segment() {
    let pat = p("rooms/*");
    assert!(pat.matches("rooms/lobby"));
    assert!(pat.matches("rooms/"));
    assert!(!pat.matches("rooms/a/b"));
    assert!(!pat.matches("rooms"));

    let pat = p("room-*");
    assert!(pat.matches("room-1"));
    assert!(pat.matches("room-"));
    assert!(!pat.matches("room-1/x"));
    assert!(!pat.matches("room/x"));

    let pat = p("a*b/c");
    assert!(pat.matches("ab/c"));
    assert!(pat.matches("axxb/c"));
    assert!(pat.matches("abxb/c"));
    assert!(!pat.matches("abx/c"));
    assert!(!pat.matches("a/b/c"));

    let pat = p("*/*");
    assert!(pat.matches("a/b"));
    assert!(!pat.matches("a"));
    assert!(!pat.matches("a/b/c"));

    let pat = p("*a*a*");
    assert!(pat.matches("aa"));
    assert!(pat.matches("xaxay"));
    assert!(!pat.matches("xay"));
}

#[test]
fn double_star_matches_rest() {
    let pat = p("app/**");
    assert!(pat.matches("app/x"));
    assert!(pat.matches("app/x/y/z"));
    assert!(pat.matches("app/"));
    assert!(!pat.matches("app"));
    assert!(!pat.matches("apps/x"));

    let all = p("**");
    assert!(all.matches("anything/at/all"));
    assert!(all.matches(""));

    let pat = p("a/*x**");
    assert!(pat.matches("a/yx"));
    assert!(pat.matches("a/yxz/w"));
    assert!(!pat.matches("a/y/x"));
}

#[test]
fn covers_common_cases() {
    let yes = [
        ("a/**", "a/*"),
        ("a/**", "a/*/b"),
        ("a/**", "a/**"),
        ("a/**", "a/b"),
        ("a/*", "a/x*"),
        ("a/*", "a/*x*"),
        ("a/*", "a/b"),
        ("**", "a/**"),
        ("**", "*"),
        ("**", "x"),
        ("*", "a*"),
        ("*/*", "a/*"),
        ("a*", "ab*"),
        ("a**", "a/**"),
        ("*a*", "*a*a*"),
        ("room-*", "room-1"),
    ];
    for (big, small) in yes {
        assert!(p(big).covers(&p(small)), "{big} should cover {small}");
    }
    let no = [
        ("a/*", "a/**"),
        ("room-*", "room/x"),
        ("room-*", "room-*/x"),
        ("a/*", "b/*"),
        ("a/x*", "a/*"),
        ("a/b", "a/*"),
        ("a/*/b", "a/**"),
        ("*", "**"),
        ("*", "*/*"),
        ("a/**", "a"),
        ("a/**", "*"),
        ("*a*a*", "*a*"),
        ("x", "y"),
    ];
    for (big, small) in no {
        assert!(!p(big).covers(&p(small)), "{big} should not cover {small}");
    }
}

// ---- brute force -----------------------------------------------------

/// Straightforward NFA simulation, independent of `glob_match`.
fn nfa_match(toks: &[Tok], input: &str) -> bool {
    let mut cur = vec![false; toks.len() + 1];
    close(toks, 0, &mut cur);
    for b in input.bytes() {
        let sym = if b.is_ascii() {
            Sym::Byte(b)
        } else {
            Sym::Other
        };
        cur = step_set(toks, &cur, sym);
    }
    cur[toks.len()]
}

/// All strings over `alpha` with length <= `max`.
fn strings(alpha: &[char], max: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..max {
        let mut next = Vec::new();
        for s in &layer {
            for &c in alpha {
                let mut t = s.clone();
                t.push(c);
                next.push(t);
            }
        }
        out.extend(next.iter().cloned());
        layer = next;
    }
    out
}

fn all_patterns(max_len: usize) -> Vec<Pattern> {
    let mut v: Vec<Pattern> = strings(&['a', 'b', '/', '*'], max_len)
        .iter()
        .filter_map(|s| Pattern::parse(s, MAX).ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn glob_match_agrees_with_nfa() {
    let pats = all_patterns(5);
    let inputs = strings(&['a', 'b', '/', 'c'], 6);
    for pat in &pats {
        for s in &inputs {
            assert_eq!(
                pat.matches(s),
                nfa_match(&pat.toks, s),
                "pattern {pat} input {s:?}"
            );
        }
    }
}

/// Checks `covers` against brute force for all patterns of up to
/// `pat_len` chars over {a,b,/,*} and all strings of up to `str_len`
/// chars over {a,b,/,c} ('c' stands for "any other character").
/// Panics on any unsound answer; returns the number of pairs where the
/// brute force found inclusion but `covers` said no.
fn brute_force_covers(pat_len: usize, str_len: usize) -> usize {
    let pats = all_patterns(pat_len);
    let inputs = strings(&['a', 'b', '/', 'c'], str_len);
    let table: Vec<Vec<bool>> = pats
        .iter()
        .map(|pt| inputs.iter().map(|s| pt.matches(s)).collect())
        .collect();

    let (mut pairs, mut brute_yes, mut covers_yes, mut incomplete) = (0, 0, 0, 0);
    for (i, big) in pats.iter().enumerate() {
        for (j, small) in pats.iter().enumerate() {
            pairs += 1;
            let brute = table[j].iter().zip(&table[i]).all(|(&s, &b)| !s || b);
            let cov = big.covers(small);
            if cov {
                covers_yes += 1;
                assert!(brute, "{big} wrongly claimed to cover {small}");
            }
            if brute {
                brute_yes += 1;
                if !cov {
                    incomplete += 1;
                }
            }
        }
    }
    eprintln!(
        "covers brute force (patterns <= {pat_len}, strings <= {str_len}): {} patterns, \
         {pairs} pairs, {brute_yes} included by brute force, {covers_yes} covered, \
         {incomplete} incomplete",
        pats.len()
    );
    incomplete
}

#[test]
fn covers_is_sound_and_exact_by_brute_force() {
    // Counterexamples for such short patterns are short, so the brute
    // force is exact here and `covers` must agree with it everywhere.
    assert_eq!(brute_force_covers(4, 6), 0);
}

/// Larger sweep; slow in debug builds. Run with
/// `cargo test --release -- --ignored covers_brute_force_large`.
#[test]
#[ignore]
fn covers_brute_force_large() {
    assert_eq!(brute_force_covers(5, 7), 0);
}

#[test]
fn covers_terminates_on_long_patterns() {
    // A long pattern still terminates quickly and answers correctly.
    let big = p(&"*a".repeat(100));
    let small = p(&"*a".repeat(101));
    assert!(big.covers(&small));
    assert!(!small.covers(&big));
}
