//! Every size limit on what a client sends, in one place: the domains enforce them and
//! the HTTP error contract (`http::error`) names them in its messages, without either
//! depending on the other.

/// The largest request body accepted (`DefaultBodyLimit`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most entries one usage report may carry (the filter sends at most this many).
pub const MAX_USAGE_ENTRIES: usize = 10_000;
/// The largest usage report body: 10 000 entries of about 60 bytes, with room to spare.
pub const MAX_USAGE_BODY_BYTES: usize = 1024 * 1024;
/// The most item ids a token may carry.
pub const MAX_ITEMS: usize = 1000;
/// The largest `p` (seed 001 params), as compact JSON text.
pub const MAX_PARAMS_BYTES: usize = 4096;
/// The longest `app`, in characters.
pub const MAX_APP_CHARS: usize = 200;
