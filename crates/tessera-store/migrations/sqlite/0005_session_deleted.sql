-- Nothing to do on SQLite: a deleted session is seen through `PRAGMA data_version` (see
-- src/auth/revocation.rs). This file keeps the two migration histories in step.
SELECT 1;
