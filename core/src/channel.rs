//! Channel names. (Placeholder until patterns land: exact names only.)

/// Why a channel name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Empty name.
    #[error("channel name is empty")]
    Empty,
    /// Longer than the configured maximum.
    #[error("channel name is too long")]
    TooLong,
    /// A character outside the allowed set.
    #[error("channel name has a forbidden character {0:?}")]
    BadChar(char),
}

/// Checks a concrete channel name.
pub fn validate_channel(name: &str, max_len: usize) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > max_len {
        return Err(ChannelError::TooLong);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/@=+~!$".contains(*c)))
    {
        return Err(ChannelError::BadChar(c));
    }
    Ok(())
}
