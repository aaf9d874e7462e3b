//! The one error type of the HTTP API. Every error is `{"error","code","message"}` with a
//! stable `code`; a 500 carries no internals (they go to the log).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokengate_rules::Denial;

/// The realm in `WWW-Authenticate` challenges, the same as the filter's default.
pub const REALM: &str = "tokengate";

#[derive(Debug)]
pub enum ApiError {
    /// A refusal of the caller's Bearer token, answered exactly as the filter answers
    /// (400, 401 or 403, with `WWW-Authenticate`).
    Denied(Denial),
    /// 400 `malformed_json`: the body is not JSON.
    MalformedJson(String),
    /// 400 `unknown_field`.
    UnknownField(String),
    /// 400 `wrong_type`.
    WrongType(String),
    /// 400 `missing_field`.
    MissingField(String),
    /// 413 `body_too_large`.
    BodyTooLarge,
    /// 415 `unsupported_media_type`: the body is not `application/json`.
    UnsupportedMediaType,
    /// 400 `bad_expires_in`, listing the accepted forms.
    BadExpiresIn(String),
    /// 400 `bad_scope`: the pattern, position and reason.
    BadScope(String),
    /// 400 `unknown_scope`: the pattern is outside the catalogue.
    UnknownScope(String),
    /// 403 `scope_exceeds_parent`: a child token asked for more than its parent holds.
    ScopeExceedsParent(String),
    /// 400 `lifetime_exceeds_parent`.
    LifetimeExceedsParent,
    /// 400 `bad_name`.
    BadName,
    /// 400 `bad_token_id`: not 24 lower-case hex digits.
    BadTokenId,
    /// 400 `bad_query`: a query parameter is malformed.
    BadQuery(String),
    /// 400 `bad_request_line`: `POST /explain` needs `"METHOD /path"`.
    BadRequestLine(String),
    /// 400 `bad_call_mode`: `callMode` is not create, update or delete.
    BadCallMode,
    /// 400 `bad_flags`: `fl` is neither -1 nor a combination of 0x100 ... 0x2000.
    BadFlags,
    /// 400 `bad_items`: too many item ids.
    BadItems,
    /// 400 `bad_params`: `p` is not a JSON object or array of objects, or too large.
    BadParams,
    /// 400 `bad_app`.
    BadApp,
    /// 400 `bad_at`.
    BadAt(String),
    /// 400 `bad_dur`.
    BadDur(String),
    /// 400 `bad_delete_all`.
    BadDeleteAll,
    /// 403 `user_not_accessible`: `userId` is neither the caller's user nor a child of it.
    UserNotAccessible,
    /// 400 `bad_user`: a user field is malformed (the message names it).
    BadUser(String),
    /// 409 `user_exists`: the name is taken.
    UserExists,
    /// 404 `user_not_found`: no such user among the caller's own and its descendants.
    UserNotFound,
    /// 403 `admin_required` for users: only an admin manages other users.
    UsersNeedAdmin(&'static str),
    /// 403 `rights_exceed_caller`: the token would hold more than the caller (names which).
    RightsExceedCaller(&'static str),
    /// 403 `rights_exceed_parent`: an amended token would hold more than the token it was
    /// issued from holds now (names which).
    RightsExceedParent(&'static str),
    /// 409 `token_not_live`: the token is revoked or expired.
    TokenNotLive,
    /// 403 `admin_required`: only a user with role `admin` may do this (key rotation).
    AdminRequired,
    /// 409 `too_many_keys`: a rotation would publish more than `TOKENGATE_MAX_KEYS` keys.
    /// The body adds `oldestKid`, `lastTokenExpiresAt` (ms, `null`: no live token) and
    /// `publishedUntil` (ms, `null` while the key still signs).
    TooManyKeys {
        message: String,
        oldest_kid: String,
        last_token_expires_at: Option<i64>,
        published_until: Option<i64>,
    },
    /// 400 `bad_usage_report`.
    BadUsageReport(String),
    /// 413 `too_many_entries`: a usage report over the batch cap.
    TooManyEntries,
    /// 400 `empty_credentials` (seed 002 code 7).
    EmptyCredentials,
    /// 403 `plan_not_pro` (seed 002 code 2): this login type needs the Pro plan.
    PlanNotPro(&'static str),
    /// 403 `not_admin` (seed 002 code 3): a role switch from a connection not in the admin role.
    NotAdmin,
    /// 403 `security_type_not_allowed` (seed 002 code 4).
    SecurityTypeNotAllowed(&'static str),
    /// 403 `role_mismatch` (seed 002 code 5): the login would not get the role asked for.
    RoleMismatch,
    /// 400 `bad_role` (seed 002 code 9).
    BadRole,
    /// 400 `bad_type` (seed 002 code 10): `type` or `credentialsKind`.
    BadType(&'static str),
    /// 400 `missing_type` (seed 002 code 11).
    MissingType(&'static str),
    /// 400 `missing_credentials` (seed 002 code 12).
    MissingCredentials(&'static str),
    /// 400 `bad_method`: a seed-002 body whose `method` is not `auth`.
    BadMethod,
    /// 400 `bad_request_id`: `requestId` is not a short string or a number.
    BadRequestId(usize),
    /// 400 `bad_plan`.
    BadPlan,
    /// 400 `bad_response_flags`: seed 003 `fl` is not a combination of 0x1 ... 0x20.
    BadResponseFlags,
    /// 400 `bad_session_id`: not 24 lower-case hex digits.
    BadSessionId,
    /// 404 `session_not_found`: no such session among the caller's.
    SessionNotFound,
    /// 401 `wrong_credentials`: the same answer for an unknown user and a wrong password.
    WrongCredentials,
    /// 429 `too_many_attempts` with `Retry-After` (seconds).
    TooManyAttempts {
        retry_after_secs: u64,
    },
    /// 404 `token_not_found`: no such token in the caller's account.
    TokenNotFound,
    /// 401 `bad_proxy_credential`: the sync channel's credential is missing or wrong.
    BadProxyCredential,
    /// 404 `not_found`: no such route.
    NotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 503 `database_unavailable`.
    DatabaseUnavailable,
    /// 500 `internal`.
    Internal,
    /// Seed 000.
    BadNetwork(String),
    NetworkExists,
    NetworkNotFound,
    BadCount,
    BadVoucherKind,
    BadDays,
    TooManyVouchers {
        unused: i64,
        remaining: i64,
    },
    BadVoucherId,
    VoucherNotFound,
    VoucherMalformed(&'static str),
    BadDevice,
    VoucherUsed,
    VoucherExpired,
    VoucherRevoked,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError as E;
        match self {
            E::Denied(d) => StatusCode::from_u16(d.status()).unwrap_or(StatusCode::UNAUTHORIZED),
            E::MalformedJson(_)
            | E::UnknownField(_)
            | E::WrongType(_)
            | E::MissingField(_)
            | E::BadExpiresIn(_)
            | E::BadScope(_)
            | E::UnknownScope(_)
            | E::LifetimeExceedsParent
            | E::BadName
            | E::BadTokenId
            | E::BadQuery(_)
            | E::BadRequestLine(_)
            | E::BadCallMode
            | E::BadFlags
            | E::BadItems
            | E::BadParams
            | E::BadApp
            | E::BadAt(_)
            | E::BadDur(_)
            | E::BadDeleteAll
            | E::BadUsageReport(_)
            | E::EmptyCredentials
            | E::BadRole
            | E::BadType(_)
            | E::MissingType(_)
            | E::MissingCredentials(_)
            | E::BadMethod
            | E::BadRequestId(_)
            | E::BadPlan
            | E::BadResponseFlags
            | E::BadSessionId
            | E::BadNetwork(_)
            | E::BadCount
            | E::BadVoucherKind
            | E::BadDays
            | E::BadVoucherId
            | E::VoucherMalformed(_)
            | E::BadDevice => StatusCode::BAD_REQUEST,
            E::NetworkExists | E::TooManyVouchers { .. } | E::VoucherUsed => StatusCode::CONFLICT,
            E::NetworkNotFound | E::VoucherNotFound => StatusCode::NOT_FOUND,
            E::VoucherExpired | E::VoucherRevoked => StatusCode::GONE,
            E::SessionNotFound => StatusCode::NOT_FOUND,
            E::PlanNotPro(_) | E::NotAdmin | E::SecurityTypeNotAllowed(_) | E::RoleMismatch => StatusCode::FORBIDDEN,
            E::TooManyEntries => StatusCode::PAYLOAD_TOO_LARGE,
            E::UserNotAccessible | E::RightsExceedCaller(_) | E::RightsExceedParent(_) => StatusCode::FORBIDDEN,
            E::TokenNotLive | E::TooManyKeys { .. } => StatusCode::CONFLICT,
            E::AdminRequired | E::UsersNeedAdmin(_) => StatusCode::FORBIDDEN,
            E::BadUser(_) => StatusCode::BAD_REQUEST,
            E::UserExists => StatusCode::CONFLICT,
            E::UserNotFound => StatusCode::NOT_FOUND,
            E::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            E::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            E::ScopeExceedsParent(_) => StatusCode::FORBIDDEN,
            E::WrongCredentials | E::BadProxyCredential => StatusCode::UNAUTHORIZED,
            E::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::TokenNotFound | E::NotFound => StatusCode::NOT_FOUND,
            E::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            E::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            E::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError as E;
        match self {
            E::Denied(d) => d.code(),
            E::MalformedJson(_) => "malformed_json",
            E::UnknownField(_) => "unknown_field",
            E::WrongType(_) => "wrong_type",
            E::MissingField(_) => "missing_field",
            E::BodyTooLarge => "body_too_large",
            E::UnsupportedMediaType => "unsupported_media_type",
            E::BadExpiresIn(_) => "bad_expires_in",
            E::BadScope(_) => "bad_scope",
            E::UnknownScope(_) => "unknown_scope",
            E::ScopeExceedsParent(_) => "scope_exceeds_parent",
            E::LifetimeExceedsParent => "lifetime_exceeds_parent",
            E::BadName => "bad_name",
            E::BadTokenId => "bad_token_id",
            E::BadQuery(_) => "bad_query",
            E::BadRequestLine(_) => "bad_request_line",
            E::BadCallMode => "bad_call_mode",
            E::BadFlags => "bad_flags",
            E::BadItems => "bad_items",
            E::BadParams => "bad_params",
            E::BadApp => "bad_app",
            E::BadAt(_) => "bad_at",
            E::BadDur(_) => "bad_dur",
            E::BadDeleteAll => "bad_delete_all",
            E::BadUsageReport(_) => "bad_usage_report",
            E::TooManyEntries => "too_many_entries",
            E::UserNotAccessible => "user_not_accessible",
            E::RightsExceedCaller(_) => "rights_exceed_caller",
            E::RightsExceedParent(_) => "rights_exceed_parent",
            E::TokenNotLive => "token_not_live",
            E::AdminRequired | E::UsersNeedAdmin(_) => "admin_required",
            E::BadUser(_) => "bad_user",
            E::UserExists => "user_exists",
            E::UserNotFound => "user_not_found",
            E::TooManyKeys { .. } => "too_many_keys",
            E::EmptyCredentials => "empty_credentials",
            E::PlanNotPro(_) => "plan_not_pro",
            E::NotAdmin => "not_admin",
            E::SecurityTypeNotAllowed(_) => "security_type_not_allowed",
            E::RoleMismatch => "role_mismatch",
            E::BadRole => "bad_role",
            E::BadType(_) => "bad_type",
            E::MissingType(_) => "missing_type",
            E::MissingCredentials(_) => "missing_credentials",
            E::BadMethod => "bad_method",
            E::BadRequestId(_) => "bad_request_id",
            E::BadPlan => "bad_plan",
            E::BadResponseFlags => "bad_response_flags",
            E::BadSessionId => "bad_session_id",
            E::SessionNotFound => "session_not_found",
            E::WrongCredentials => "wrong_credentials",
            E::TooManyAttempts { .. } => "too_many_attempts",
            E::TokenNotFound => "token_not_found",
            E::BadProxyCredential => "bad_proxy_credential",
            E::NotFound => "not_found",
            E::MethodNotAllowed => "method_not_allowed",
            E::DatabaseUnavailable => "database_unavailable",
            E::Internal => "internal",
            E::BadNetwork(_) => "bad_network",
            E::NetworkExists => "network_exists",
            E::NetworkNotFound => "network_not_found",
            E::BadCount => "bad_count",
            E::BadVoucherKind => "bad_voucher_kind",
            E::BadDays => "bad_days",
            E::TooManyVouchers { .. } => "too_many_vouchers",
            E::BadVoucherId => "bad_voucher_id",
            E::VoucherNotFound => "voucher_not_found",
            E::VoucherMalformed(_) => "voucher_malformed",
            E::BadDevice => "bad_device",
            E::VoucherUsed => "voucher_used",
            E::VoucherExpired => "voucher_expired",
            E::VoucherRevoked => "voucher_revoked",
        }
    }

    /// The `error` field: a coarse class, the RFC 6750 error for token refusals.
    fn error(&self) -> &'static str {
        match self {
            ApiError::Denied(d) => d.error(),
            ApiError::ScopeExceedsParent(_) | ApiError::RightsExceedCaller(_) | ApiError::RightsExceedParent(_) => "insufficient_scope",
            _ => match self.status() {
                StatusCode::BAD_REQUEST => "invalid_request",
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::CONFLICT => "conflict",
                StatusCode::GONE => "gone",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                _ => "internal",
            },
        }
    }

    pub fn message(&self) -> String {
        use ApiError as E;
        match self {
            E::Denied(d) => d.message().to_owned(),
            E::MalformedJson(m)
            | E::UnknownField(m)
            | E::WrongType(m)
            | E::MissingField(m)
            | E::BadExpiresIn(m)
            | E::BadScope(m)
            | E::BadQuery(m)
            | E::BadRequestLine(m)
            | E::BadAt(m)
            | E::BadDur(m)
            | E::BadUsageReport(m) => m.clone(),
            E::TooManyEntries => format!("a usage report carries at most {} entries", crate::limits::MAX_USAGE_ENTRIES),
            E::BadCallMode => "callMode must be \"create\", \"update\" or \"delete\"".into(),
            E::BadFlags => "fl must be -1 (unlimited) or a combination of 0x100, 0x200, 0x400, 0x800, 0x1000 and 0x2000".into(),
            E::BadItems => format!("items holds at most {} item ids", crate::limits::MAX_ITEMS),
            E::BadParams => format!(
                "p must be a JSON object or an array of objects (as JSON or as escaped JSON text), at most {} bytes",
                crate::limits::MAX_PARAMS_BYTES
            ),
            E::BadApp => format!("app is at most {} characters without control characters", crate::limits::MAX_APP_CHARS),
            E::BadDeleteAll => "deleteAll must be true, false, 1, 0, \"true\" or \"false\"".into(),
            E::UserNotAccessible => "userId must be your own user or one of its child users".into(),
            E::RightsExceedCaller(what) => {
                format!("the token's {what} would exceed those of the token making the request")
            }
            E::RightsExceedParent(what) => {
                format!("the token's {what} would exceed those its parent token (the one it was issued from) holds now")
            }
            E::TokenNotLive => "the token is revoked or expired; it can no longer be updated".into(),
            E::AdminRequired => "only a user with the admin role may rotate the signing keys".into(),
            E::UsersNeedAdmin(what) => format!("only a user with the admin role may {what}"),
            E::BadUser(why) => why.clone(),
            E::UserExists => "a user with this name exists already".into(),
            E::UserNotFound => "no such user among yours (your own user and the users under it)".into(),
            E::TooManyKeys { message, .. } => message.clone(),
            E::UnknownScope(s) => {
                format!("scope {s:?} names no method of this API; GET /scopes lists the methods a token can be scoped to")
            }
            E::ScopeExceedsParent(s) => {
                format!("scope {s:?} is not within the scopes of the token making the request")
            }
            E::BodyTooLarge => format!("the request body is larger than {} bytes", crate::limits::MAX_BODY_BYTES),
            E::UnsupportedMediaType => "send the body as JSON with 'Content-Type: application/json'".into(),
            E::LifetimeExceedsParent => {
                "expiresIn would outlive the token making the request; ask for a shorter lifetime or leave expiresIn out".into()
            }
            E::BadName => "name is at most 200 characters without control characters".into(),
            E::BadTokenId => "a token id is 24 lower-case hexadecimal digits".into(),
            E::EmptyCredentials => "the user name and the password (PIN, token) must not be empty".into(),
            E::WrongCredentials => "the user name or the password (PIN, token) is wrong".into(),
            E::PlanNotPro(what) => format!("{what} need the account's Pro plan (GET /account shows the plan)"),
            E::NotAdmin => "only a connection in the admin role may switch roles; log in with credentials instead".into(),
            E::SecurityTypeNotAllowed(why) | E::BadType(why) | E::MissingType(why) | E::MissingCredentials(why) => (*why).into(),
            E::RoleMismatch => "this login would not get the role asked for: the user's role is user".into(),
            E::BadRole => "role must be \"admin\" or \"user\"".into(),
            E::BadMethod => "method must be \"auth\" (or left out)".into(),
            E::BadRequestId(max) => format!("requestId must be a number or a string of at most {max} characters"),
            E::BadPlan => "plan must be \"basic\" or \"pro\"".into(),
            E::BadResponseFlags => {
                "fl (response flags) must be a combination of 0x1 basic, 0x2 user, 0x4 token, 0x8 items, 0x10 billing, 0x20 custom properties".into()
            }
            E::BadSessionId => "a session id is 24 lower-case hexadecimal digits".into(),
            E::SessionNotFound => "no live or recent session with this id among yours".into(),
            E::TooManyAttempts { retry_after_secs } => {
                format!("too many wrong attempts; retry in {retry_after_secs} seconds")
            }
            E::TokenNotFound => "no token with this id in your account".into(),
            E::BadProxyCredential => "the proxy credential is missing or wrong".into(),
            E::NotFound => "no such route".into(),
            E::MethodNotAllowed => "this route does not accept this method".into(),
            E::DatabaseUnavailable => "the database is unavailable; retry shortly".into(),
            E::Internal => "internal error".into(),
            E::BadNetwork(why) => why.clone(),
            E::NetworkExists => "a network with this id exists already (ids are unique across the service)".into(),
            E::NetworkNotFound => "no such network (GET /networks lists the networks of your account)".into(),
            E::BadCount => format!("count must be a whole number from 1 to {}", crate::vouchers::MAX_UNUSED),
            E::BadVoucherKind => "kind must be \"single\" (one device) or \"multi\" (any number of devices)".into(),
            E::BadDays => "days must be a whole number from 1 to 30, or null for unlimited vouchers".into(),
            E::TooManyVouchers { unused, remaining } => format!(
                "an account keeps at most {} unused vouchers; it has {unused}, so at most {remaining} more can be made now (delete or hand out some first)",
                crate::vouchers::MAX_UNUSED
            ),
            E::BadVoucherId => "a voucher id is 24 lower-case hexadecimal digits".into(),
            E::VoucherNotFound => "no such voucher for this network; check the code".into(),
            E::VoucherMalformed(why) => (*why).into(),
            E::BadDevice => format!(
                "device must be a MAC address, an IP address or an id of at most {} characters from [A-Za-z0-9._:-]",
                tokengate_rules::device::MAX_DEVICE_LEN
            ),
            E::VoucherUsed => "this single-use voucher is already in use on another device".into(),
            E::VoucherExpired => "this voucher's time has run out".into(),
            E::VoucherRevoked => "this voucher has been revoked".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_with(serde_json::Map::new())
    }
}

impl ApiError {
    /// The error's answer with `extra` fields in its body too (a seed's envelope); the
    /// standard `error`, `code` and `message` win over an extra field of the same name.
    pub fn into_response_with(self, extra: serde_json::Map<String, serde_json::Value>) -> Response {
        let mut body = serde_json::Value::Object(extra);
        body["error"] = self.error().into();
        body["code"] = self.code().into();
        body["message"] = self.message().into();
        if let ApiError::TooManyVouchers { unused, remaining } = &self {
            body["unused"] = (*unused).into();
            body["remaining"] = (*remaining).into();
            body["limit"] = crate::vouchers::MAX_UNUSED.into();
        }
        if let ApiError::TooManyKeys { oldest_kid, last_token_expires_at, published_until, .. } = &self {
            body["oldestKid"] = oldest_kid.as_str().into();
            body["lastTokenExpiresAt"] = (*last_token_expires_at).into();
            body["publishedUntil"] = (*published_until).into();
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        let challenge = match &self {
            ApiError::Denied(d) => d.www_authenticate(REALM),
            ApiError::WrongCredentials => Some(format!("Bearer realm=\"{REALM}\"")),
            ApiError::BadProxyCredential => Some(format!("Bearer realm=\"{REALM}-sync\", error=\"invalid_token\"")),
            _ => None,
        };
        let headers = response.headers_mut();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let ApiError::TooManyAttempts { retry_after_secs } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if matches!(self, ApiError::DatabaseUnavailable) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::DatabaseUnavailable
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::Internal
        }
    }
}

impl From<Denial> for ApiError {
    fn from(d: Denial) -> Self {
        ApiError::Denied(d)
    }
}

/// Why the control plane could not start (configuration, database, keys), phrased for
/// the operator.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}
