-- ASVS 2.2.3 / 3.7.1: a new e-mail address waits here until the link mailed to it is
-- opened; until then the account keeps its current (and only sign-in and reset) address.
ALTER TABLE users ADD COLUMN pending_email TEXT;

-- A sign-up's verification link may sign its browser in: the SHA-256 of a value only
-- that browser can compute (derived from its CSRF secret), and the authorization
-- request to resume. Both NULL for every other token.
ALTER TABLE account_tokens ADD COLUMN browser_hash BLOB;
ALTER TABLE account_tokens ADD COLUMN resume_request TEXT;
