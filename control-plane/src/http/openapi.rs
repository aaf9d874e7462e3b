//! The hand-written OpenAPI 3 document of the control plane, served at
//! `<prefix>/openapi.json`. Keep it in step with the routes and `wire.rs`.

use serde_json::{json, Value};

use crate::limits::MAX_BODY_BYTES;

/// The document, with the API's paths under `prefix` (`""` or `/api/v1`).
pub fn document(prefix: &str) -> Value {
    let err = |description: &str| {
        json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    };
    let body_errors = json!({
        "400": err("Bad input: malformed_json, unknown_field, wrong_type, missing_field, bad_expires_in, bad_scope, unknown_scope, bad_name, lifetime_exceeds_parent, or a bad Authorization header (invalid_request)."),
        "413": err("body_too_large"),
        "415": err("unsupported_media_type"),
        "503": err("database_unavailable"),
    });
    let guarded = |scope: &str| {
        json!({
            "401": err(&format!("missing_token, an invalid token (token_*), or token_revoked. WWW-Authenticate carries the RFC 6750 challenge. Needs the scope `{scope}` unless the token has no scopes.")),
            "403": err("insufficient_scope (the token's scopes do not allow this request) or insufficient_flags (managing tokens needs a token without `fl` limits or with `fl` -1)."),
        })
    };
    let merge = |parts: &[&Value]| {
        let mut out = serde_json::Map::new();
        for part in parts {
            if let Some(map) = part.as_object() {
                out.extend(map.clone());
            }
        }
        Value::Object(out)
    };
    let issued = json!({"description": "The token. Its value is never shown again.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IssuedToken"}}}});

    let mut paths = serde_json::Map::new();
    paths.insert(format!("{prefix}/auth"), json!({
        "post": {
            "summary": "Issue a token for a user name and password",
            "operationId": "auth",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuthRequest"}}}},
            "responses": merge(&[&json!({
                "200": issued,
                "401": err("wrong_credentials: an unknown user and a wrong password get the same answer."),
                "429": err("too_many_attempts: the user name is locked after repeated wrong passwords; Retry-After says when to retry."),
            }), &body_errors]),
        }
    }));
    paths.insert(format!("{prefix}/tokens"), json!({
        "get": {
            "summary": "List the live tokens of the caller's account, by _id",
            "operationId": "listTokens",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}},
                {"name": "after", "in": "query", "description": "Return tokens whose _id sorts after this one (paging).", "schema": {"$ref": "#/components/schemas/TokenId"}},
            ],
            "responses": merge(&[&json!({
                "200": {"description": "Live (not revoked, not expired) tokens; never a token value.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/TokenInfo"}}}}},
                "400": err("bad_query"),
                "503": err("database_unavailable"),
            }), &guarded("GET /tokens")]),
        },
        "post": {
            "summary": "Issue a child of the caller's token, never more powerful than it",
            "description": "Every asked scope must be within one of the parent's scopes (a parent without scopes has all its user's powers); without `scopes` the child has the parent's. The child expires no later than the parent: an explicit `expiresIn` that would outlive it is refused, the 1-day default is cut to it. The child keeps the parent's `fl`, `items`, `app` and `p`, and records the parent as `par`. The child is inserted in one transaction under the lock revocations take, after re-reading the parent: a parent revoked meanwhile (even while this request was in flight) is 401 `token_revoked`, so no child outlives a cascade revocation.",
            "operationId": "createToken",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateTokenRequest"}}}},
            "responses": merge(&[&body_errors, &guarded("POST /tokens"), &json!({
                "200": issued,
                "403": err("insufficient_scope (the caller's token lacks `POST /tokens`), insufficient_flags (its `fl` is limited), scope_exceeds_parent (an asked scope is wider than the caller's), or rights_exceed_caller (the caller's token was narrowed while this request was in flight)."),
            })]),
        }
    }));
    paths.insert(format!("{prefix}/tokens/update"), json!({
        "post": {
            "summary": "Seed 001 token management: create, update (amend) or delete tokens",
            "description": "callMode `create` issues a token for the caller's user or a child user (`userId`) with `app`, `at` (activation, s; 0 = now), `dur` (s after activation; 0 = no end: the longest lifetime, cut to the caller's, and the idle sweep ends an unused token), `fl`, `p` and `items`; absent `fl`/`items` are the caller's. It answers the seed's result plus `token`, shown once. callMode `update` changes `app`, `at`, `dur`, `fl`, `p` and `items` of a live token `h` without changing its string: the change is committed with a change-log entry and proxies apply it over the signed claims within the propagation bound; the end is at + dur but never after the expiry signed into the token nor the end of the token it was issued from. Absent fields stay as they are; `null` clears `app`, `fl` (no flag limit), `p` and `items` (all items), on create too (where absent `fl`/`items` are the caller's). The amended token stays within its parent as the parent is now (403 rights_exceed_parent). An update that narrows a token (fewer flags or items, an earlier end) narrows its descendants in the same transaction: each one no longer within its parent is amended to the intersection (flags in common, items in common, the earlier end), or revoked with its descendants when it could then never be active; one change-log entry each. callMode `delete` revokes `h` and its descendants, or with `deleteAll` (true, 1 or \"true\") every token of the user. Created and updated rights never exceed the caller's (scopes, flags, items; an extended end not past the caller's).",
            "operationId": "manageTokens",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ManageRequest"}}}},
            "responses": merge(&[&body_errors, &guarded("POST /tokens/update"), &json!({
                "200": {"description": "create and update: the token in seed 001 shape (`token` only after create); delete: how many tokens were revoked.", "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/ManagedToken"}, {"$ref": "#/components/schemas/ManageDeleted"}]}}}},
                "400": err("bad_call_mode, bad_flags, bad_items, bad_params, bad_app, bad_at, bad_dur, bad_delete_all, bad_token_id, missing_field (h), lifetime_exceeds_parent, or a body error."),
                "403": err("insufficient_scope, insufficient_flags (the caller's `fl` is limited), user_not_accessible (userId is not the caller's user or a child of it), rights_exceed_caller (the token would hold more scopes, flags or items than the caller), rights_exceed_parent (an updated token would hold more flags or items than the token it was issued from holds now)."),
                "404": err("token_not_found: `h` is not a token of that user."),
                "409": err("token_not_live: the token to update is revoked or expired."),
            })]),
        }
    }));
    paths.insert(format!("{prefix}/tokens/{{id}}"), json!({
        "delete": {
            "summary": "Revoke a token and all its descendants",
            "description": "Answers 204 once the revocations are committed; proxies refuse the tokens within the sync bound. Revoking a revoked token answers 204 again. With `wait` (ms, at most 10000) the answer waits, after the commit, until every live proxy (one that synced within 60 s or has a long poll held) has applied the revocation's version, or the time is up, and then answers 200 with the version and how many live proxies have applied it.",
            "operationId": "revokeToken",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/TokenId"}},
                {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 10000}, "description": "Wait up to this many ms for the live proxies to apply the revocation."},
            ],
            "responses": merge(&[&guarded("DELETE /tokens/:id"), &json!({
                "204": {"description": "Revoked (no `wait`)."},
                "200": {"description": "Revoked, with `wait`: the propagation as it stood when the answer was given.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["version", "proxies"],
                    "properties": {"version": {"type": "integer", "format": "int64"}, "proxies": {"type": "object", "required": ["live", "applied"], "properties": {"live": {"type": "integer"}, "applied": {"type": "integer"}}}},
                }}}},
                "400": err("bad_token_id, bad_query (wait)"),
                "404": err("token_not_found: no such token in the caller's account."),
                "503": err("database_unavailable"),
            })]),
        }
    }));
    let user = json!({"type": "object", "required": ["id", "nm", "role", "crt", "bact", "fl", "prp", "ct", "ld", "pin"], "properties": {
        "id": {"type": "string"}, "nm": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "user"]},
        "crt": {"type": "string", "nullable": true, "description": "The creator (parent user)."}, "bact": {"type": "string", "description": "The account."},
        "fl": {"type": "integer", "format": "int64"}, "prp": {"type": "object", "additionalProperties": {"type": "string"}},
        "ct": {"type": "integer", "description": "Created, s since the epoch."}, "ld": {"type": "integer", "nullable": true, "description": "Last login, s."},
        "pin": {"type": "boolean", "description": "Whether a PIN is set."},
    }});
    let user_errors = json!({
        "400": err("bad_user (the message names the field), or a body error"),
        "403": err("admin_required, insufficient_scope, insufficient_flags"),
        "404": err("user_not_found: not your user nor one under it"),
        "409": err("user_exists"),
    });
    paths.insert(format!("{prefix}/users"), json!({
        "get": {
            "summary": "List your user and every user under it",
            "operationId": "listUsers",
            "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /users"), &json!({"200": {"description": "Users, yours first.", "content": {"application/json": {"schema": {"type": "array", "items": user.clone()}}}}})]),
        },
        "post": {
            "summary": "Create a user under yours (admin role, a token that may manage)",
            "operationId": "createUser",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "password"], "properties": {
                "name": {"type": "string"}, "password": {"type": "string", "minLength": 8}, "pin": {"type": "string", "pattern": "^[0-9]{6,12}$"},
                "role": {"type": "string", "enum": ["admin", "user"]}, "fl": {"type": "integer", "minimum": 0}, "prp": {"type": "object", "additionalProperties": {"type": "string"}},
            }}}}},
            "responses": merge(&[&body_errors, &guarded("POST /users"), &user_errors, &json!({"201": {"description": "Created.", "content": {"application/json": {"schema": user.clone()}}}})]),
        }
    }));
    paths.insert(format!("{prefix}/users/{{id}}"), json!({
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "get": {"summary": "Read a user", "operationId": "getUser", "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /users/:id"), &user_errors, &json!({"200": {"description": "The user.", "content": {"application/json": {"schema": user.clone()}}}})])},
        "patch": {"summary": "Change a user: your own password, PIN (null removes it) and properties; an admin also changes role and flags of users under it",
            "operationId": "updateUser", "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "password": {"type": "string"}, "pin": {"type": "string", "nullable": true}, "role": {"type": "string"}, "fl": {"type": "integer"}, "prp": {"type": "object"},
            }}}}},
            "responses": merge(&[&body_errors, &guarded("PATCH /users/:id"), &user_errors, &json!({"200": {"description": "The user as it is now.", "content": {"application/json": {"schema": user.clone()}}}})])},
        "delete": {"summary": "Delete a user under yours and every user under it; revokes all their tokens", "operationId": "deleteUser", "security": [{"bearer": []}],
            "responses": merge(&[&guarded("DELETE /users/:id"), &user_errors, &json!({"204": {"description": "Deleted; their tokens are revoked at every proxy."}})])},
    }));
    let seed_failure = |code: &str| json!({"description": code, "content": {"application/json": {"schema": {"type": "object",
        "required": ["method", "result", "resultCode", "error", "code", "message"], "properties": {
            "method": {"type": "string"}, "requestId": {}, "result": {"type": "boolean"}, "resultCode": {"type": "integer", "minimum": 1, "maximum": 12},
            "error": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"},
        }}}}});
    paths.insert(format!("{prefix}/login"), json!({
        "post": {
            "summary": "Seed 002 login: secured (password, PIN or token), unsecured (when TOKENGATE_UNSECURED_LOGIN names a user), or an admin's switch to the user role (no type, a Bearer, role user)",
            "operationId": "login",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "method": {"type": "string", "enum": ["auth"]}, "requestId": {"description": "Echoed back: a string (at most 200 characters) or a number."},
                "type": {"type": "string", "enum": ["secured", "unsecured"]}, "username": {"type": "string"}, "credentials": {"type": "string"},
                "credentialsKind": {"type": "string", "enum": ["password", "pin", "token"], "description": "Optional; otherwise a JWT is a token, digits are the PIN of a user with one, anything else the password."},
                "role": {"type": "string", "enum": ["admin", "user"]},
            }}}}},
            "responses": {
                "200": {"description": "resultCode 0. previleges (the seed's spelling) and privileges: 1 user, 2 admin; token: an API token (30 days, or the original's end for a token login or a switch); tokenForHttpServer: a tg-http+jwt token for 5 minutes, taken only on routes marked http_token.",
                    "content": {"application/json": {"schema": {"type": "object", "required": ["method", "requestId", "previleges", "privileges", "token", "tokenForHttpServer", "result", "resultCode"], "properties": {
                        "method": {"type": "string"}, "requestId": {}, "previleges": {"type": "integer", "enum": [1, 2]}, "privileges": {"type": "integer", "enum": [1, 2]},
                        "token": {"type": "string"}, "tokenForHttpServer": {"type": "string"}, "result": {"type": "boolean"}, "resultCode": {"type": "integer", "enum": [0]},
                        "_id": {"type": "string"}, "expiresAt": {"type": "integer"}, "tokenForHttpServerExpiresAt": {"type": "integer"},
                    }}}}},
                "400": seed_failure("7 empty_credentials, 9 bad_role, 10 bad_type, 11 missing_type, 12 missing_credentials; without resultCode: malformed_json, bad_method, bad_request_id"),
                "401": seed_failure("8 wrong_credentials; 3 with the token code when a switch's Bearer is refused"),
                "403": seed_failure("2 plan_not_pro, 3 not_admin, 4 security_type_not_allowed, 5 role_mismatch"),
                "429": seed_failure("6 too_many_attempts, with Retry-After"),
                "500": seed_failure("1 internal"),
                "503": seed_failure("1 database_unavailable"),
            },
        }
    }));
    paths.insert(format!("{prefix}/token/login"), json!({
        "post": {
            "summary": "Seed 003 token login: a session from an API token",
            "description": "The token (seed 004 or 001, never a tokenForHttpServer) goes through the credential throttle like a password. The answer is a session: `eid` is a tg-session+jwt token the caller sends as its Bearer through the gate. It has the token's rights as they are now (its amendments apply, its revocation ends it), never outlives it, and dies after TOKENGATE_SESSION_IDLE_SECS (300) without a request through any proxy. The answer comes once every live proxy admits the session (`proxies`), or after 2 s. `fl` chooses the sections: 0x1 basic (`au`, `tm`, `operator`), 0x2 user (`user` in seed 003 names, with `cls`), 0x4 token (`token`: the token settings as escaped JSON), 0x8 items (`items` inside `token`), 0x10 billing (`features {unlim, svcs}`), 0x20 custom properties (`user.prp`); absent: 0x3.",
            "operationId": "tokenLogin",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["token"], "additionalProperties": false, "properties": {
                "token": {"type": "string"}, "operateAs": {"type": "string", "description": "The name of a user under the token's user; the session acts as that user, and the gate names both (x-tokengate-user, x-tokengate-operator)."},
                "fl": {"type": "integer", "minimum": 0, "maximum": 63},
            }}}}},
            "responses": merge(&[&body_errors, &json!({
                "200": {"description": "The session.", "content": {"application/json": {"schema": {"type": "object", "required": ["eid", "_id", "expiresAt", "idleSecs", "proxies"], "properties": {
                    "eid": {"type": "string", "description": "The session token (tg-session+jwt): the Bearer through the gate. Shown once."},
                    "_id": {"type": "string"}, "expiresAt": {"type": "integer"}, "idleSecs": {"type": "integer"},
                    "proxies": {"type": "object", "properties": {"live": {"type": "integer"}, "applied": {"type": "integer"}}},
                    "au": {"type": "string"}, "tm": {"type": "integer"}, "operator": {"type": "string"},
                    "user": {"type": "object"}, "token": {"type": "string", "description": "Escaped JSON: {app, ct, at, dur, fl, p, items}"},
                    "features": {"type": "object", "properties": {"unlim": {"type": "boolean"}, "svcs": {"type": "object"}}},
                }}}}},
                "400": err("bad_response_flags, empty_credentials, or a body error (malformed_json, unknown_field, wrong_type, missing_field)."),
                "401": err("wrong_credentials: the token is not a valid, live API token."),
                "404": err("user_not_found: operateAs names no user under the token's user."),
                "429": err("too_many_attempts, with Retry-After."),
            })]),
        }
    }));
    let session_info = json!({"type": "object", "required": ["_id", "user", "operator", "token", "createdAt", "lastUsedAt", "expiresAt", "idleEndsAt"], "properties": {
        "_id": {"type": "string"}, "user": {"type": "object", "properties": {"id": {"type": "string"}, "nm": {"type": "string"}}},
        "operator": {"type": "object", "properties": {"id": {"type": "string"}, "nm": {"type": "string"}}}, "token": {"type": "string"},
        "createdAt": {"type": "integer"}, "lastUsedAt": {"type": "integer"}, "expiresAt": {"type": "integer"}, "idleEndsAt": {"type": "integer"},
    }});
    paths.insert(format!("{prefix}/sessions"), json!({
        "get": {"summary": "The live sessions of your user and the users under it (never their values), by id, in pages", "operationId": "listSessions", "security": [{"bearer": []}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "after", "in": "query", "description": "The last `_id` of the previous page.", "schema": {"type": "string", "pattern": "^[0-9a-f]{24}$"}},
            ],
            "responses": merge(&[&guarded("GET /sessions"), &json!({"200": {"description": "Live sessions.", "content": {"application/json": {"schema": {"type": "array", "items": session_info}}}}, "400": err("bad_query: limit or after is malformed.")})])},
    }));
    paths.insert(format!("{prefix}/sessions/{{id}}"), json!({
        "delete": {"summary": "End a session (logout): with the session itself as the Bearer, or an API token of a user at or above its user or operator", "operationId": "endSession", "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{24}$"}}],
            "responses": merge(&[&guarded("DELETE /sessions/:id"), &json!({
                "204": {"description": "Ended (also when it had ended already); every proxy refuses it once it has synced (milliseconds)."},
                "400": err("bad_session_id"),
                "404": err("session_not_found: no such session among the caller's."),
            })])},
    }));
    let account = json!({"type": "object", "required": ["id", "name", "plan", "createdAt"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "plan": {"type": "string", "enum": ["basic", "pro"]}, "createdAt": {"type": "integer"},
    }});
    paths.insert(format!("{prefix}/account"), json!({
        "get": {"summary": "Your account and its plan", "operationId": "getAccount", "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /account"), &json!({"200": {"description": "The account.", "content": {"application/json": {"schema": account.clone()}}}})])},
        "patch": {"summary": "Change the plan (the account's first admin, a token that may manage); PIN and unsecured logins need pro",
            "operationId": "updateAccount", "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string", "enum": ["basic", "pro"]}}}}}},
            "responses": merge(&[&body_errors, &guarded("PATCH /account"), &json!({"400": err("bad_plan"), "200": {"description": "The account as it is now.", "content": {"application/json": {"schema": account}}}})])},
    }));
    paths.insert(format!("{prefix}/scopes"), json!({
        "get": {
            "summary": "List the methods a token can be scoped to",
            "description": "The operator's route catalogue plus the control plane's own scopable routes, as canonical patterns. Any valid API token may call it.",
            "operationId": "listScopes",
            "security": [{"bearer": []}],
            "responses": merge(&[&guarded("(none)"), &json!({
                "200": {"description": "Scope patterns.", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}}},
            })]),
        }
    }));
    paths.insert(format!("{prefix}/explain"), json!({
        "post": {
            "summary": "Explain whether the gate would allow a request for a token, and why",
            "description": "Decides as the filter does, with the operator's route table (TOKENGATE_CATALOGUE, flags and items included) and the token's current rights (amendments applied): first the token's state (token_revoked, token_expired, token_not_yet_valid), then the path safety checks (path_* codes), then scopes, flags and items (insufficient_scope, insufficient_flags, item_not_allowed, item_not_numeric). A refusal is a 200 with allowed=false. Without `token` the caller's own token is explained; explaining another token of the account needs a token that may manage tokens (no `fl`, or `fl` -1).",
            "operationId": "explain",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExplainRequest"}}}},
            "responses": merge(&[&body_errors, &guarded("POST /explain"), &json!({
                "200": {"description": "The decision.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Explanation"}}}},
                "400": err("bad_request_line (not \"METHOD /path\"), bad_token_id, or a body error (malformed_json, unknown_field, wrong_type, missing_field)."),
                "403": err("insufficient_scope (the caller lacks `POST /explain`) or insufficient_flags (explaining another token needs a token that may manage tokens)."),
                "404": err("token_not_found: no such token in the caller's account."),
            })]),
        }
    }));
    paths.insert(format!("{prefix}/keys"), json!({
        "get": {
            "summary": "List the signing keys",
            "description": "Every key, newest first: when it was made and retired, whether it signs new tokens, and whether it is published (JWKS and the proxies' key set). A retired key stays published while a live token it signed can be presented (and at least 60 s after retirement), then drops out; a withdrawn key (`retireOldest`) is never published again. Needs a token that may manage tokens.",
            "operationId": "listKeys",
            "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /keys"), &json!({
                "200": {"description": "Keys.", "content": {"application/json": {"schema": {"type": "array", "items": {
                    "type": "object", "required": ["kid", "createdAt", "retiredAt", "withdrawnAt", "signing", "published"],
                    "properties": {"kid": {"type": "string"}, "createdAt": {"type": "integer", "format": "int64"}, "retiredAt": {"type": "integer", "format": "int64", "nullable": true}, "withdrawnAt": {"type": "integer", "format": "int64", "nullable": true}, "signing": {"type": "boolean"}, "published": {"type": "boolean"}},
                }}}}},
                "503": err("database_unavailable"),
            })]),
        }
    }));
    paths.insert(format!("{prefix}/keys/rotate"), json!({
        "post": {
            "summary": "Rotate the signing key",
            "description": "Makes a new Ed25519 key and retires the current one, in one transaction with a `keys` change-log entry; answered only after the commit. Long-polling proxies are woken and get the new key set at once (others within the propagation bound); every sync answer carries the key set read with its version, so a proxy at that version has the new key. This process signs with the new key only after the commit; other replicas switch within about a second. Tokens signed by the old key keep working: it stays published while any of them can live. No request body. Only a user with role admin may rotate (403 admin_required otherwise, however unlimited the token). At most TOKENGATE_MAX_KEYS keys (default 4) are published after a rotation (each costs every proxy worker a 640 KiB table): past it the answer is 409 too_many_keys with `oldestKid`, `lastTokenExpiresAt` (ms; when the oldest key's last live token expires) and `publishedUntil` (ms; when it drops out), unless `retireOldest=true`: then the oldest keys the cap needs are withdrawn (never published again) and every live token they signed, with its descendants, is revoked in the rotation's transaction; `revokedTokens` says how many.",
            "operationId": "rotateKey",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "retireOldest", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}, "description": "true: at the key cap, withdraw the oldest key now and revoke every live token it signed."},
            ],
            "responses": merge(&[&guarded("POST /keys/rotate"), &json!({
                "200": {"description": "The new key.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["kid", "createdAt", "retired", "version", "proxies", "withdrawn", "revokedTokens"],
                    "properties": {"kid": {"type": "string"}, "createdAt": {"type": "integer", "format": "int64"}, "retired": {"type": "array", "items": {"type": "string"}}, "version": {"type": "integer", "format": "int64", "description": "The change-log version that carries the new key set."}, "withdrawn": {"type": "array", "items": {"type": "string"}, "description": "Keys withdrawn by retireOldest."}, "revokedTokens": {"type": "integer", "description": "Live tokens of the withdrawn keys (descendants included), revoked by this rotation."}},
                }}}},
                "400": err("bad_query: retireOldest is not true or false."),
                "403": err("insufficient_scope, insufficient_flags, or admin_required (the caller's user is not an admin)."),
                "409": {"description": "too_many_keys: the rotation would publish more than TOKENGATE_MAX_KEYS keys.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["error", "code", "message", "oldestKid", "lastTokenExpiresAt", "publishedUntil"],
                    "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}, "oldestKid": {"type": "string"}, "lastTokenExpiresAt": {"type": "integer", "format": "int64", "nullable": true}, "publishedUntil": {"type": "integer", "format": "int64", "nullable": true, "description": "null while the oldest key still signs."}},
                }}}},
                "503": err("database_unavailable"),
            })]),
        }
    }));
    paths.insert(format!("{prefix}/proxies"), json!({
        "get": {
            "summary": "List the proxies and the version each has applied",
            "description": "version is the `since` of the proxy's last sync call: the version it has applied (a proxy polls again at once after applying an answer). live: it called within the last 60 s, or a long poll of it is held now. Needs a token that may manage tokens.",
            "operationId": "listProxies",
            "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /proxies"), &json!({
                "200": {"description": "Proxies.", "content": {"application/json": {"schema": {"type": "array", "items": {
                    "type": "object", "required": ["id", "version", "lagVersions", "lastSeenAt", "live"],
                    "properties": {"id": {"type": "string"}, "version": {"type": "integer", "format": "int64"}, "lagVersions": {"type": "integer", "format": "int64"}, "lastSeenAt": {"type": "integer", "format": "int64"}, "live": {"type": "boolean"}},
                }}}}},
                "503": err("database_unavailable"),
            })]),
        }
    }));
    paths.insert(format!("{prefix}/openapi.json"), json!({
        "get": {"summary": "This document", "operationId": "openapi", "responses": {"200": {"description": "OpenAPI 3 document."}}}
    }));
    paths.insert("/.well-known/jwks.json".into(), json!({
        "get": {
            "summary": "The public keys that verify tokengate tokens",
            "operationId": "jwks",
            "responses": {"200": {"description": "JWK set (RFC 8037 OKP, Ed25519).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Jwks"}}}}},
        }
    }));
    paths.insert("/metrics".into(), json!({
        "get": {
            "summary": "Prometheus metrics (text format 0.0.4)",
            "description": "OpenMetrics text (prometheus-client); no authentication; TOKENGATE_METRICS=off removes the route. tokengate_tokens_issued_total, tokengate_revocations_total, tokengate_amendments_total, tokengate_idle_revocations_total, tokengate_sessions_started_total, tokengate_sessions_ended_total, tokengate_key_rotations_total, tokengate_login_failures_total, tokengate_login_throttled_total, tokengate_credential_attempts_total{kind,outcome=success|failure|throttled}, tokengate_usage_reports_total, tokengate_vouchers_generated_total, tokengate_vouchers_redeemed_total, tokengate_voucher_failures_total, tokengate_sync_calls_total{result=delta|snapshot|unchanged|refused|failed}, tokengate_sync_held, tokengate_sync_version, tokengate_proxies_live, tokengate_http_request_duration_seconds{route,status} (histogram by route pattern, long polls excluded), tokengate_propagation_seconds (histogram: a change's commit until every live proxy applied it). Counters are per process.",
            "operationId": "metrics",
            "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "503": err("database_unavailable")},
        }
    }));
    paths.insert("/healthz".into(), json!({
        "get": {
            "summary": "Liveness and database reachability",
            "operationId": "health",
            "responses": {
                "200": {"description": "The database answers.", "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}},
                "503": err("database_unavailable"),
            },
        }
    }));
    paths.insert("/sync/v1/changes".into(), json!({
        "get": {
            "summary": "Proxy sync: revocations, amendments and keys since a version (long poll)",
            "description": "since=0, a since older than the change log keeps, or a since ahead of the current version answer a snapshot of every live revocation. Otherwise the changes after `since`; with none, the call is held up to wait_ms (at most 30000) and then answers the same version with no revocations. `keys` is always the whole public key set.",
            "operationId": "syncChanges",
            "security": [{"proxy": []}],
            "parameters": [
                {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                {"name": "wait_ms", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 30000, "default": 0}},
                {"name": "proxy", "in": "query", "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}},
            ],
            "responses": {
                "200": {"description": "Changes.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncResponse"}}}},
                "400": err("bad_query"),
                "401": err("bad_proxy_credential (also every call when no proxy secret is configured)"),
                "503": err("database_unavailable"),
            },
        }
    }));

    paths.insert("/sync/v1/usage".into(), json!({
        "post": {
            "summary": "Proxy usage report: when each token was last seen",
            "description": "Sets each token's last use to the later of the stored and the reported time (a time ahead of the server's clock counts as now); unknown ids are ignored. A token unused for TOKENGATE_IDLE_SECS (default 100 days) is revoked by the sweeper, which runs every TOKENGATE_SWEEP_SECS (default 60), and proxies get the revocation like any other.",
            "operationId": "syncUsage",
            "security": [{"proxy": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["proxy", "used"],
                "properties": {
                    "proxy": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                    "used": {"type": "array", "maxItems": 10000, "items": {"type": "object", "required": ["jti", "at"], "properties": {"jti": {"type": "string"}, "at": {"type": "integer", "format": "int64", "minimum": 0, "description": "ms since the epoch"}}}},
                },
            }}}},
            "responses": {
                "204": {"description": "Recorded."},
                "400": err("bad_usage_report (proxy id), or a body error (malformed_json, missing_field, wrong_type)."),
                "401": err("bad_proxy_credential"),
                "413": err("too_many_entries (more than 10000) or body_too_large (more than 1 MiB)"),
                "415": err("unsupported_media_type"),
                "503": err("database_unavailable"),
            },
        }
    }));

    // Seed 000: Wi-Fi networks, vouchers, redemption, the PDF and the captive portal.
    let id_param = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let network = json!({"type": "object", "required": ["id", "name", "createdAt"], "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"}, "name": {"type": "string"}, "createdAt": {"type": "integer"}}});
    let proxies = json!({"type": "object", "nullable": true, "properties": {"live": {"type": "integer"}, "applied": {"type": "integer"}}});
    let revoked = json!({"type": "object", "properties": {"id": {"type": "string"}, "revokedActivations": {"type": "integer"},
        "version": {"type": "integer", "nullable": true}, "proxies": proxies, "state": {"type": "string"}, "deleted": {"type": "boolean"}}});
    let activation = json!({"type": "object", "properties": {"id": {"type": "string", "description": "The jti of the access tokens made for it."},
        "state": {"type": "string", "enum": ["active", "expired", "revoked"]}, "device": {"type": "string"}, "network": {"type": "string"},
        "activatedAt": {"type": "integer"}, "endsAt": {"type": "integer", "nullable": true}, "revokedAt": {"type": "integer", "nullable": true},
        "revokeReason": {"type": "string", "nullable": true, "enum": ["revoked", "deleted", "other_network", "network_deleted", null]}}});
    paths.insert(format!("{prefix}/networks"), json!({
        "get": {"summary": "The Wi-Fi networks of your account", "operationId": "listNetworks", "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /networks"), &json!({"200": {"description": "Networks by id.", "content": {"application/json": {"schema": {"type": "object", "properties": {"networks": {"type": "array", "items": network.clone()}}}}}}})])},
        "post": {"summary": "Add a Wi-Fi network (its id is what proxies list in `audiences` and voucher tokens carry as `aud`)", "operationId": "createNetwork", "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["id", "name"], "additionalProperties": false, "properties": {
                "id": {"type": "string"}, "name": {"type": "string", "maxLength": 100}}}}}},
            "responses": merge(&[&body_errors, &guarded("POST /networks"), &json!({"201": {"description": "Created.", "content": {"application/json": {"schema": network.clone()}}},
                "400": err("bad_network (id: 1 to 63 of [a-z0-9._-], not the API audience; name: 1 to 100 characters), or a body error."), "409": err("network_exists")})])},
    }));
    paths.insert(format!("{prefix}/networks/{{id}}"), json!({
        "delete": {"summary": "Delete a network; its live activations are revoked at every proxy", "operationId": "deleteNetwork", "security": [{"bearer": []}], "parameters": id_param.clone(),
            "responses": merge(&[&guarded("DELETE /networks/:id"), &json!({"200": {"description": "Deleted.", "content": {"application/json": {"schema": revoked.clone()}}}, "404": err("network_not_found")})])},
    }));
    paths.insert(format!("{prefix}/vouchers"), json!({
        "get": {"summary": "Your account's vouchers with their state and activations (the code only while unused)", "operationId": "listVouchers", "security": [{"bearer": []}],
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}, {"name": "after", "in": "query", "schema": {"type": "string", "pattern": "^[0-9a-f]{24}$"}}],
            "responses": merge(&[&guarded("GET /vouchers"), &json!({"200": {"description": "A page of vouchers by id.", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "vouchers": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "kind": {"type": "string", "enum": ["single", "multi"]},
                    "days": {"type": "integer", "nullable": true}, "state": {"type": "string", "enum": ["unused", "active", "expired", "revoked"]}, "code": {"type": "string", "nullable": true},
                    "createdAt": {"type": "integer"}, "revokedAt": {"type": "integer", "nullable": true}, "activations": {"type": "array", "items": activation}}}},
                "unused": {"type": "integer"}, "limit": {"type": "integer"}, "next": {"type": "string", "nullable": true}}}}}}, "400": err("bad_query")})])},
        "post": {"summary": "Generate vouchers: 12-digit codes, listed once in the answer (at most 200 unused per account)", "operationId": "generateVouchers", "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["count", "kind"], "additionalProperties": false, "properties": {
                "count": {"type": "integer", "minimum": 1, "maximum": 200}, "kind": {"type": "string", "enum": ["single", "multi"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 30, "nullable": true, "description": "From each activation; null or absent: unlimited."}}}}}},
            "responses": merge(&[&body_errors, &guarded("POST /vouchers"), &json!({
                "201": {"description": "The new vouchers with their codes.", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "vouchers": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "code": {"type": "string", "pattern": "^[1-9][0-9]{11}$"},
                        "kind": {"type": "string"}, "days": {"type": "integer", "nullable": true}, "createdAt": {"type": "integer"}}}},
                    "unused": {"type": "integer"}, "limit": {"type": "integer"}}}}}},
                "400": err("bad_count, bad_voucher_kind, bad_days, or a body error."),
                "409": {"description": "too_many_vouchers: nothing was made; `remaining` says how many may still be made.", "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}, "unused": {"type": "integer"}, "remaining": {"type": "integer"}, "limit": {"type": "integer"}}}}}},
            })])},
    }));
    paths.insert(format!("{prefix}/vouchers/pdf"), json!({
        "get": {"summary": "A printable A4 PDF of the unused vouchers: each twice, the guest's copy with instructions (English and Russian) and the operator's copy with the generation date", "operationId": "voucherPdf", "security": [{"bearer": []}],
            "responses": merge(&[&guarded("GET /vouchers/pdf"), &json!({"200": {"description": "The PDF (attachment).", "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})])},
    }));
    paths.insert(format!("{prefix}/vouchers/redeem"), json!({
        "post": {"summary": "Redeem a code (open: the portal calls it): an access token bound to the device and the network", "operationId": "redeemVoucher",
            "description": "Malformed codes (length, characters, the check digit) are refused before any lookup. Every other failure counts toward the credential throttle per source, per device and per account (a daily budget that keeps the chance of guessing any live code under 1e-4 a year). Redeeming again from the same device renews the token.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["code", "device", "network"], "additionalProperties": false, "properties": {
                "code": {"type": "string", "description": "12 digits; spaces and dashes between groups allowed."}, "device": {"type": "string", "description": "A MAC address in any usual spelling, an IP address, or an id of at most 64 of [A-Za-z0-9._:-]."},
                "network": {"type": "string"}}}}}},
            "responses": merge(&[&body_errors, &json!({
                "200": {"description": "The access token (tg-voucher+jwt).", "content": {"application/json": {"schema": {"type": "object", "required": ["token", "expiresAt", "activationId", "voucherId", "network", "device"], "properties": {
                    "token": {"type": "string"}, "expiresAt": {"type": "integer", "description": "The token's end (ms): redeem again before it."}, "endsAt": {"type": "integer", "nullable": true, "description": "The activation's end; null: unlimited."},
                    "activatedAt": {"type": "integer"}, "activationId": {"type": "string"}, "voucherId": {"type": "string"}, "kind": {"type": "string"}, "days": {"type": "integer", "nullable": true},
                    "network": {"type": "string"}, "device": {"type": "string"}, "renewed": {"type": "boolean"}, "revokedElsewhere": {"type": "integer"}}}}}},
                "400": err("voucher_malformed, bad_device, or a body error."),
                "404": err("network_not_found, or voucher_not_found (no such code for this network's account)."),
                "409": err("voucher_used: a single-use voucher in use on another device."),
                "410": err("voucher_expired or voucher_revoked."),
                "429": err("too_many_attempts, with Retry-After."),
            })])},
    }));
    paths.insert(format!("{prefix}/vouchers/{{id}}/revoke"), json!({
        "post": {"summary": "Revoke a voucher and every activation of it at every proxy (waits up to 2 s for the live proxies)", "operationId": "revokeVoucher", "security": [{"bearer": []}], "parameters": id_param.clone(),
            "responses": merge(&[&guarded("POST /vouchers/:id/revoke"), &json!({"200": {"description": "Revoked (again: harmless).", "content": {"application/json": {"schema": revoked.clone()}}}, "400": err("bad_voucher_id"), "404": err("voucher_not_found")})])},
    }));
    paths.insert(format!("{prefix}/vouchers/{{id}}"), json!({
        "delete": {"summary": "Delete a voucher (its activations are revoked first)", "operationId": "deleteVoucher", "security": [{"bearer": []}], "parameters": id_param,
            "responses": merge(&[&guarded("DELETE /vouchers/:id"), &json!({"200": {"description": "Deleted.", "content": {"application/json": {"schema": revoked}}}, "400": err("bad_voucher_id"), "404": err("voucher_not_found")})])},
    }));
    paths.insert("/portal".to_owned(), json!({
        "get": {"summary": "The captive portal page (HTML, English or Russian by Accept-Language or ?lang=); the device and network come from the gate (x-tokengate-device, x-tokengate-network, believed from TOKENGATE_TRUSTED_PROXIES only)", "operationId": "portalPage",
            "responses": {"200": {"description": "The form, or how to reach it through the Wi-Fi.", "content": {"text/html": {}}}}},
        "post": {"summary": "The portal's form: redeem `code` for this device and network", "operationId": "portalRedeem",
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {"code": {"type": "string"}, "lang": {"type": "string", "enum": ["en", "ru"]}}}}}},
            "responses": {"200": {"description": "Connected, until when.", "content": {"text/html": {}}}, "400": {"description": "Malformed code or no device.", "content": {"text/html": {}}},
                "404": {"description": "Wrong code.", "content": {"text/html": {}}}, "409": {"description": "Used on another device.", "content": {"text/html": {}}},
                "410": {"description": "Expired or revoked.", "content": {"text/html": {}}}, "429": {"description": "Too many attempts (Retry-After).", "content": {"text/html": {}}}}},
    }));

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "tokengate control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Issues, lists and revokes API tokens and keeps proxies in sync. Times are milliseconds since the epoch. Every error is {{\"error\",\"code\",\"message\"}} with a stable code. Request bodies are JSON (Content-Type: application/json), at most {MAX_BODY_BYTES} bytes; unknown fields are refused."),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA, typ tg-api+jwt)"},
                "proxy": {"type": "http", "scheme": "bearer", "description": "The proxy secret (TOKENGATE_PROXY_SECRET)."},
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error", "code", "message"],
                    "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}},
                },
                "TokenId": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
                "ExpiresIn": {"type": "string", "description": "\"<n> <unit>\", unit one of second(s), minute(s), hour(s), day(s), week(s), year(s); for example \"30 minutes\", \"8 days\". Default 1 day, at most 10 years.", "example": "8 days"},
                "Scope": {"type": "string", "description": "\"METHOD /path\" with :param segments; the API prefix may be left out.", "example": "GET /objects/:id"},
                "AuthRequest": {
                    "type": "object", "additionalProperties": false, "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string"},
                        "password": {"type": "string", "format": "password"},
                        "expiresIn": {"$ref": "#/components/schemas/ExpiresIn"},
                        "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}, "description": "Absent: all the user's powers."},
                        "name": {"type": "string", "maxLength": 200},
                    },
                },
                "CreateTokenRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "expiresIn": {"$ref": "#/components/schemas/ExpiresIn"},
                        "name": {"type": "string", "maxLength": 200},
                        "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}, "description": "Absent: the parent's scopes."},
                    },
                },
                "IssuedToken": {
                    "type": "object", "required": ["_id", "issuedAt", "expiresAt", "user", "token", "name", "scopes"],
                    "properties": {
                        "_id": {"$ref": "#/components/schemas/TokenId"},
                        "issuedAt": {"type": "integer", "format": "int64"},
                        "expiresAt": {"type": "integer", "format": "int64"},
                        "user": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                        "token": {"type": "string"},
                        "name": {"type": "string", "nullable": true},
                        "scopes": {"type": "array", "items": {"type": "string"}, "nullable": true},
                    },
                },
                "TokenInfo": {
                    "type": "object", "required": ["_id", "name", "issuedAt", "expiresAt", "scopes", "parent", "app", "fl", "items", "at", "dur", "lastUsedAt"],
                    "properties": {
                        "_id": {"$ref": "#/components/schemas/TokenId"},
                        "name": {"type": "string", "nullable": true},
                        "issuedAt": {"type": "integer", "format": "int64"},
                        "expiresAt": {"type": "integer", "format": "int64", "description": "The effective end (ms), amendments applied."},
                        "scopes": {"type": "array", "items": {"type": "string"}, "nullable": true},
                        "parent": {"type": "string", "nullable": true},
                        "app": {"type": "string", "nullable": true},
                        "fl": {"type": "integer", "format": "int64", "nullable": true},
                        "items": {"type": "array", "items": {"type": "integer", "format": "int64"}, "nullable": true},
                        "at": {"type": "integer", "format": "int64", "description": "Activation, s since the epoch (seed 001)."},
                        "dur": {"type": "integer", "format": "int64", "description": "Lifetime after activation, s (seed 001; 0 = no end of its own)."},
                        "lastUsedAt": {"type": "integer", "format": "int64", "nullable": true, "description": "When a proxy last reported the token used (ms)."},
                    },
                },
                "ManageRequest": {
                    "type": "object", "additionalProperties": false, "required": ["callMode"],
                    "properties": {
                        "callMode": {"type": "string", "enum": ["create", "update", "delete"]},
                        "userId": {"type": "string", "description": "The caller's user (default) or a child user of it."},
                        "h": {"$ref": "#/components/schemas/TokenId"},
                        "app": {"type": "string", "maxLength": 200, "nullable": true, "description": "null: no app."},
                        "at": {"type": "integer", "minimum": 0, "description": "Activation, s since the epoch; 0 = now."},
                        "dur": {"type": "integer", "minimum": 0, "description": "Lifetime after activation, s; 0 = no end."},
                        "fl": {"type": "integer", "format": "int64", "nullable": true, "description": "-1 (unlimited) or a combination of 0x100 ... 0x2000; null: no flag limit (absent: keep, or on create the caller's)."},
                        "p": {"description": "A JSON object or an array of objects, as JSON or as escaped JSON text (at most 4096 bytes compact); null: no params.", "nullable": true, "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}, {"type": "string"}]},
                        "items": {"type": "array", "maxItems": 1000, "items": {"type": "integer", "format": "int64"}, "nullable": true, "description": "null: all items (absent: keep, or on create the caller's)."},
                        "deleteAll": {"description": "true, 1 or \"true\": delete every token of the user.", "oneOf": [{"type": "boolean"}, {"type": "integer"}, {"type": "string"}]},
                    },
                },
                "ManagedToken": {
                    "type": "object", "required": ["h", "app", "at", "ct", "dur", "fl", "items", "p"],
                    "properties": {
                        "h": {"$ref": "#/components/schemas/TokenId"},
                        "app": {"type": "string", "nullable": true},
                        "at": {"type": "integer", "format": "int64", "description": "s since the epoch"},
                        "ct": {"type": "integer", "format": "int64", "description": "created, s since the epoch"},
                        "dur": {"type": "integer", "format": "int64"},
                        "fl": {"type": "integer", "format": "int64", "nullable": true},
                        "items": {"type": "array", "items": {"type": "integer", "format": "int64"}, "nullable": true},
                        "p": {"nullable": true, "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
                        "token": {"type": "string", "description": "Only in the answer to create; never shown again."},
                    },
                },
                "ManageDeleted": {
                    "type": "object", "required": ["deleted", "version"],
                    "properties": {"deleted": {"type": "integer"}, "version": {"type": "integer", "format": "int64", "nullable": true}},
                },
                "ExplainRequest": {
                    "type": "object", "additionalProperties": false, "required": ["request"],
                    "properties": {
                        "request": {"type": "string", "description": "\"METHOD /path\", the path as the gate sees it (API prefix included).", "example": "GET /api/v1/objects/42"},
                        "token": {"$ref": "#/components/schemas/TokenId"},
                    },
                },
                "Explanation": {
                    "type": "object", "required": ["allowed", "code", "scope", "route", "requiredFlags", "missingFlags", "item", "token"],
                    "properties": {
                        "allowed": {"type": "boolean"},
                        "code": {"type": "string", "nullable": true, "description": "The refusal's stable code; null when allowed."},
                        "scope": {"type": "string", "nullable": true, "description": "The token's scope pattern that allowed the method and path (null for a token without scopes)."},
                        "route": {"type": "string", "nullable": true, "description": "The most specific matching route of the operator's table."},
                        "requiredFlags": {"type": "integer", "format": "int64", "nullable": true, "description": "The route's flags (-1: only an unlimited token)."},
                        "missingFlags": {"type": "integer", "format": "int64", "nullable": true, "description": "The flags the token lacks (0: none), once a route matched."},
                        "item": {"type": "object", "nullable": true, "required": ["param", "value"], "properties": {"param": {"type": "string"}, "value": {"type": "string"}}},
                        "token": {
                            "type": "object", "required": ["_id", "scopes", "fl", "items"],
                            "properties": {
                                "_id": {"$ref": "#/components/schemas/TokenId"},
                                "scopes": {"type": "array", "items": {"type": "string"}, "nullable": true},
                                "fl": {"type": "integer", "format": "int64", "nullable": true},
                                "items": {"type": "array", "items": {"type": "integer", "format": "int64"}, "nullable": true},
                            },
                        },
                    },
                },
                "Jwks": {
                    "type": "object", "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": {
                        "type": "object", "required": ["kty", "crv", "alg", "use", "kid", "x"],
                        "properties": {"kty": {"type": "string", "enum": ["OKP"]}, "crv": {"type": "string", "enum": ["Ed25519"]}, "alg": {"type": "string", "enum": ["EdDSA"]}, "use": {"type": "string", "enum": ["sig"]}, "kid": {"type": "string"}, "x": {"type": "string"}},
                    }}},
                },
                "SyncResponse": {
                    "type": "object", "required": ["protocol", "version", "snapshot", "keys", "revoked", "serverTime"],
                    "properties": {
                        "protocol": {"type": "integer", "enum": [1]},
                        "version": {"type": "integer", "format": "int64"},
                        "snapshot": {"type": "boolean"},
                        "keys": {"type": "array", "items": {"type": "object", "required": ["kid", "x"], "properties": {"kid": {"type": "string"}, "x": {"type": "string"}}}},
                        "revoked": {"type": "array", "items": {"type": "object", "required": ["jti", "exp"], "properties": {"jti": {"type": "string"}, "exp": {"type": "integer", "description": "seconds since the epoch"}}}},
                        "amended": {"type": "array", "description": "Amendments since `since` (a snapshot: every live one): each amended token's whole amendable state, applied over its signed claims.", "items": {
                            "type": "object", "required": ["jti", "nbf", "exp"],
                            "properties": {
                                "jti": {"type": "string"},
                                "nbf": {"type": "integer", "description": "activation, s since the epoch"},
                                "exp": {"type": "integer", "description": "end, s since the epoch (never after the signed exp)"},
                                "app": {"type": "string"}, "fl": {"type": "integer", "format": "int64"}, "p": {"type": "string", "description": "JSON text"},
                                "items": {"type": "array", "items": {"type": "integer", "format": "int64"}},
                            },
                        }},
                        "serverTime": {"type": "integer", "format": "int64"},
                    },
                },
            },
        },
    })
}
