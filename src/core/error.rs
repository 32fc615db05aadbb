//! The core's typed error: why an action on a tip (or anything else the core decides for a
//! console, a chat or the command line) did not happen, or that something unexpected broke.
//! Each front end says a refusal in its own words; `Unexpected` is a failure, not an answer.

/// Why an action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no such tip")]
    NotFound,
    #[error("not allowed")]
    Refused,
    #[error("the tip is no longer open")]
    NotOpen,
    #[error("the tip is not closed")]
    NotClosed,
    #[error("no such officer, or not serving the tip's village")]
    NoOfficer,
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for CoreError {
    fn from(e: anyhow::Error) -> CoreError {
        CoreError::Unexpected(e)
    }
}

impl From<sqlx::Error> for CoreError {
    fn from(e: sqlx::Error) -> CoreError {
        CoreError::Unexpected(e.into())
    }
}
