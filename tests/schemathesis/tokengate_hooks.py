"""Schemathesis hooks for tokengate (loaded with SCHEMATHESIS_HOOKS=tokengate_hooks).

Authentication: every request carries a fresh admin API token. Fuzzing revokes tokens
(`POST /tokens/update` with `deleteAll`, `DELETE /tokens/{id}`), so the token is fetched
again through `POST /api/v1/auth` every second instead of once for the whole run. When
that fails (the fuzzer may change the admin's password through `PATCH /users/{id}`, or
lock the account with wrong passwords), the last token is kept: the API then answers
401, which every guarded operation documents.
"""

import os

import requests
import schemathesis

BASE = os.environ["TOKENGATE_URL"]
USER = os.environ["TOKENGATE_ADMIN_USER"]
PASSWORD = os.environ["TOKENGATE_ADMIN_PASSWORD"]


@schemathesis.auth(refresh_interval=1)
class AdminToken:
    last = None

    def get(self, case, context):
        try:
            AdminToken.last = self.fetch()
        except (requests.RequestException, KeyError, ValueError):
            if AdminToken.last is None:
                raise
        return AdminToken.last

    def fetch(self):
        answer = requests.post(
            f"{BASE}/api/v1/auth",
            json={"username": USER, "password": PASSWORD, "expiresIn": "1 hour"},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
