-- Version 0 means "a proxy that has nothing yet": such a proxy always gets a snapshot at
-- once. The log itself starts at 1, so a proxy that is current is never at 0 and its
-- next call is held (long poll) instead of answered again at once.
UPDATE sync_state SET version = 1 WHERE id = 1 AND version = 0;
