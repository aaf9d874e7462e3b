-- Seed 002. An account's plan: `basic` or `pro` (PIN and unsecured logins are Pro-only).
-- The first account, made at first start, belongs to the operator and is `pro`.
ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'basic' CHECK (plan IN ('basic', 'pro'));
UPDATE accounts SET plan = 'pro' WHERE id = (SELECT id FROM accounts ORDER BY created_at, id LIMIT 1);

-- A token's kind: `api` (seeds 004 and 001, and a login's `token`) or `http` (a login's
-- `tokenForHttpServer`, `tg-http+jwt`). `GET /tokens` lists the API tokens.
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'http'));
-- `user`: the token acts in the user role whatever its user's role is (a login with
-- "role": "user", a role switch), and so do its children. NULL: its user's role.
ALTER TABLE tokens ADD COLUMN role TEXT CHECK (role IN ('user'));
