//! Channel names and channel patterns.
//!
//! A *channel name* is the concrete address a message is published to, for
//! example `rooms/lobby`. A *pattern* is what a subscription or a token grant
//! names: either an exact channel name or a glob using `*` (any run of
//! characters without `/`) and a final `**` (anything at all, `/` included).
//!
//! Everything here is pure string processing: no IO, no allocation beyond the
//! parsed pattern, and every loop is bounded by the input lengths.

use std::collections::BTreeSet;
use std::fmt;

/// Why a channel name or a pattern was rejected.
///
/// Exists so that callers (the protocol layer, the token verifier) can report
/// a precise, stable reason to clients without parsing error strings.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ChannelError {
    /// The name or pattern is the empty string.
    #[error("channel name is empty")]
    Empty,
    /// The name or pattern is longer than the configured maximum (in bytes).
    #[error("channel name is too long")]
    TooLong,
    /// The name or pattern contains a character outside the allowed set.
    #[error("channel name contains forbidden character {0:?}")]
    BadChar(char),
    /// A `*` appears in a channel name, or `**` appears anywhere but at the
    /// very end of a pattern (or more than two `*` in a row).
    #[error("misplaced wildcard")]
    BadWildcard,
    /// The name starts or ends with `/`, or contains an empty segment (`//`).
    #[error("leading, trailing or doubled '/'")]
    BadSlash,
}

/// Characters allowed in channel names besides ASCII letters and digits.
const EXTRA_CHARS: &[u8] = b"-_.:/@=+~!$";

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (c.is_ascii() && EXTRA_CHARS.contains(&(c as u8)))
}

/// Checks everything shared by names and patterns: emptiness, length,
/// charset (with `*` allowed or not) and slash placement.
fn check_common(s: &str, max_len: usize, allow_star: bool) -> Result<(), ChannelError> {
    if s.is_empty() {
        return Err(ChannelError::Empty);
    }
    if s.len() > max_len {
        return Err(ChannelError::TooLong);
    }
    for c in s.chars() {
        if c == '*' {
            if !allow_star {
                return Err(ChannelError::BadWildcard);
            }
        } else if !is_name_char(c) {
            return Err(ChannelError::BadChar(c));
        }
    }
    if s.starts_with('/') || s.ends_with('/') || s.contains("//") {
        return Err(ChannelError::BadSlash);
    }
    Ok(())
}

/// Validates a concrete channel name (the target of a publish).
///
/// Exists so every entry point (publish, subscribe to an exact name, token
/// grants) applies one identical rule set: non-empty, at most `max_len` bytes,
/// only ASCII letters, digits and `-_.:/@=+~!$`, no leading/trailing `/` and
/// no `//`.
pub fn validate_channel(name: &str, max_len: usize) -> Result<(), ChannelError> {
    check_common(name, max_len, false)
}

/// One element of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Tok {
    /// A literal byte (patterns are ASCII-only after validation).
    Lit(u8),
    /// `*`: any run of characters without `/`.
    Star,
    /// Final `**`: any run of characters, `/` included.
    Rest,
}

/// A parsed channel pattern: an exact name, or a glob with `*` and a final `**`.
///
/// Exists so subscriptions and token grants are validated once at the edge
/// and then matched cheaply and consistently. Ordering, equality and hashing
/// follow the source text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    // Field order matters for the derived `Ord`: the source text comes first,
    // and `toks` is a pure function of it, so ordering is by text.
    raw: String,
    toks: Vec<Tok>,
}

impl Pattern {
    /// Parses and validates a pattern of at most `max_len` bytes.
    ///
    /// Exists as the single way to build a [`Pattern`], so an invalid pattern
    /// can never reach matching or the `covers` check.
    pub fn parse(s: &str, max_len: usize) -> Result<Self, ChannelError> {
        check_common(s, max_len, true)?;
        let bytes = s.as_bytes();
        let mut toks = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' {
                let run = bytes[i..].iter().take_while(|&&b| b == b'*').count();
                match run {
                    1 => toks.push(Tok::Star),
                    2 if i + 2 == bytes.len() => toks.push(Tok::Rest),
                    _ => return Err(ChannelError::BadWildcard),
                }
                i += run;
            } else {
                toks.push(Tok::Lit(bytes[i]));
                i += 1;
            }
        }
        Ok(Self {
            raw: s.to_owned(),
            toks,
        })
    }

    /// The pattern's source text.
    ///
    /// Exists for logging, wire encoding and use as a map key.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// True if the pattern contains a wildcard (otherwise it names exactly
    /// one channel).
    ///
    /// Exists so the router can keep exact subscriptions in a hash map and
    /// only scan the (usually few) wildcard ones.
    pub fn is_wildcard(&self) -> bool {
        self.toks.iter().any(|t| !matches!(t, Tok::Lit(_)))
    }

    /// True if `channel` is matched by this pattern.
    ///
    /// Exists for publish fan-out and for checking an exact subscription or
    /// publish target against a token's granted patterns. `channel` is not
    /// validated here; call [`validate_channel`] first where that matters.
    pub fn matches(&self, channel: &str) -> bool {
        if !self.is_wildcard() {
            return self.raw == channel;
        }
        glob_match(&self.toks, channel.as_bytes())
    }

    /// Sound inclusion test: true only if every string matched by `other` is
    /// also matched by `self`.
    ///
    /// Exists to check that a wildcard subscription stays within a token's
    /// granted patterns. It decides inclusion exactly (over all strings, not
    /// only valid channel names) by exploring the product of `other`'s
    /// automaton with the subset construction of `self`'s. As a safety net
    /// against pathological inputs it gives up and answers `false` (the safe
    /// answer) after exploring [`COVERS_STATE_LIMIT`] product states, which
    /// ordinary patterns never come near.
    pub fn covers(&self, other: &Self) -> bool {
        if self == other || self.toks == [Tok::Rest] {
            return true;
        }
        if !other.is_wildcard() {
            return self.matches(&other.raw);
        }
        if !self.is_wildcard() {
            // `other` is a wildcard and `self` names a single string; a
            // wildcard pattern always matches at least two strings (its `*`
            // can be empty or not), so it can't be included.
            return false;
        }
        nfa_includes(&self.toks, &other.toks).unwrap_or(false)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Upper bound on product states explored by [`Pattern::covers`] before it
/// conservatively answers `false`.
///
/// Exists to bound CPU per check; realistic patterns need a few hundred.
pub const COVERS_STATE_LIMIT: usize = 100_000;

/// Backtracking glob matcher over bytes. `Star` never consumes `/`; `Rest`
/// (always last) consumes everything. Worst case O(pattern * input): on a
/// mismatch we only retry from the most recent `Star`, which is sufficient
/// because a `Star` cannot cross `/` and literal `/` anchors the segments.
fn glob_match(toks: &[Tok], input: &[u8]) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    // Position after the last `*` seen and the input position it resumes at.
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        match toks.get(p) {
            Some(Tok::Rest) => return true,
            Some(Tok::Star) => {
                backtrack = Some((p + 1, s));
                p += 1;
                continue;
            }
            Some(Tok::Lit(c)) if s < input.len() && input[s] == *c => {
                p += 1;
                s += 1;
                continue;
            }
            None if s == input.len() => return true,
            _ => {}
        }
        // Mismatch: let the last `*` swallow one more byte, if it can.
        match backtrack {
            Some((bp, bs)) if bs < input.len() && input[bs] != b'/' => {
                backtrack = Some((bp, bs + 1));
                p = bp;
                s = bs + 1;
            }
            _ => return false,
        }
    }
}

// ---------------------------------------------------------------------------
// Automaton inclusion for `covers`.
//
// A pattern with tokens t[0..n] is an NFA with states 0..=n; state n accepts.
//   Lit(c) at i:  on symbol c        -> i+1
//   Star at i:    epsilon            -> i+1, on any symbol but '/' -> i
//   Rest at i:    epsilon            -> i+1, on any symbol         -> i
// Symbols are grouped into classes that every transition treats alike:
// '/', each literal byte occurring in either pattern, and "any other".
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sym {
    Byte(u8),
    Other,
}

fn step_allowed(tok: &Tok, sym: Sym) -> Option<bool> {
    // Returns Some(true) to stay on a loop, Some(false) to advance, None if
    // the symbol is rejected.
    match (tok, sym) {
        (Tok::Lit(c), Sym::Byte(b)) if *c == b => Some(false),
        (Tok::Lit(_), _) => None,
        (Tok::Star, Sym::Byte(b'/')) => None,
        (Tok::Star, _) | (Tok::Rest, _) => Some(true),
    }
}

/// Adds `i` and everything reachable from it by epsilon moves.
fn close(toks: &[Tok], mut i: usize, set: &mut [bool]) {
    loop {
        set[i] = true;
        match toks.get(i) {
            Some(Tok::Star) | Some(Tok::Rest) => i += 1,
            _ => return,
        }
    }
}

fn step_set(toks: &[Tok], from: &[bool], sym: Sym) -> Vec<bool> {
    let mut out = vec![false; toks.len() + 1];
    for (i, _) in from.iter().enumerate().filter(|(_, on)| **on) {
        if let Some(tok) = toks.get(i) {
            match step_allowed(tok, sym) {
                Some(true) => close(toks, i, &mut out),
                Some(false) => close(toks, i + 1, &mut out),
                None => {}
            }
        }
    }
    out
}

/// Decides L(small) ⊆ L(big). Returns `None` if the state limit was hit.
///
/// Explores pairs (state set of `small`, state set of `big`), both
/// determinized by subset construction, from the start pair over every symbol
/// class. A reachable pair where `small` accepts and `big` does not is a
/// counterexample word; if none exists among the finitely many reachable
/// pairs, inclusion holds.
fn nfa_includes(big: &[Tok], small: &[Tok]) -> Option<bool> {
    let mut alphabet: Vec<Sym> = vec![Sym::Byte(b'/'), Sym::Other];
    for t in big.iter().chain(small) {
        if let Tok::Lit(c) = t {
            let s = Sym::Byte(*c);
            if !alphabet.contains(&s) {
                alphabet.push(s);
            }
        }
    }

    let mut start_small = vec![false; small.len() + 1];
    close(small, 0, &mut start_small);
    let mut start_big = vec![false; big.len() + 1];
    close(big, 0, &mut start_big);

    let mut seen: BTreeSet<(Vec<bool>, Vec<bool>)> = BTreeSet::new();
    let mut stack = vec![(start_small, start_big)];
    while let Some((s, b)) = stack.pop() {
        if !seen.insert((s.clone(), b.clone())) {
            continue;
        }
        if seen.len() > COVERS_STATE_LIMIT {
            return None;
        }
        if s[small.len()] && !b[big.len()] {
            return Some(false);
        }
        for &sym in &alphabet {
            let ns = step_set(small, &s, sym);
            if !ns.iter().any(|&x| x) {
                // `small` is dead: no word with this prefix is in L(small).
                continue;
            }
            let nb = step_set(big, &b, sym);
            stack.push((ns, nb));
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests;
