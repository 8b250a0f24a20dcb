//! Reading a response body from a model or tool server with a size cap: a server that answers
//! with gigabytes fails that call instead of taking the worker's memory.

/// The default cap on a response body from a model or tool server.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The most a cap may be configured to: what is read becomes an event field, and the event
/// decoder refuses fields over 4 MiB (`event::codec::MAX_AVRO_ALLOCATION`).
pub const MAX_RESPONSE_CAP: usize = 4 * 1024 * 1024;

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("response body over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body cut off: {0}")]
    Transport(#[from] reqwest::Error),
}

/// Reads the body chunk by chunk, stopping as soon as it passes `limit` bytes (a declared
/// Content-Length over the limit is refused before reading anything).
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
