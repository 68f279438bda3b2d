-- What a user sees in their list of sessions (/account/sessions): where and with what a
-- session was started, and when it was last used (updated at most every few minutes).

ALTER TABLE browser_sessions ADD COLUMN user_agent TEXT;
ALTER TABLE browser_sessions ADD COLUMN ip TEXT;
ALTER TABLE browser_sessions ADD COLUMN last_seen_at INTEGER;
