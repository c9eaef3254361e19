//! The classification of failures shared by every layer.
//!
//! Each crate keeps its own error enum and says which [`ErrorKind`] each variant is through
//! [`Classified`]; the server holds the only `ErrorKind → HTTP status` table.

/// What kind of failure happened, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request could not be parsed at all (malformed JSON, unreadable body).
    MalformedRequest,
    /// The request parsed but its content is invalid.
    InvalidInput,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    /// The client did not send its request (its body) within the server's time.
    RequestTimeout,
    /// The request URI is longer than the server reads.
    UriTooLong,
    Unauthenticated,
    Forbidden,
    RateLimited,
    /// A bounded queue is full; the caller should retry later.
    Overloaded,
    NotReady,
    Timeout,
    /// A dependency (job store, queue) cannot be reached.
    Unavailable,
    Internal,
}

/// Implemented by every error enum that can reach a client.
pub trait Classified {
    fn kind(&self) -> ErrorKind;
    /// Stable snake_case code sent to clients and used in metrics.
    fn code(&self) -> &'static str;
}
