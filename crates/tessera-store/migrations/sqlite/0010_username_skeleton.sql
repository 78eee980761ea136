-- The confusable skeleton of each username (Unicode UTS #39 §4, made case-blind): `rоot`
-- with a Cyrillic о, `r00t` and `ROOT` share the skeleton of `root`. The unique index refuses
-- a new name that looks like an existing one. NULL until Tessera fills it in for accounts
-- named before this column (at start-up, in the background); an older account whose
-- skeleton another already holds keeps NULL, and still logs in.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
CREATE UNIQUE INDEX users_username_skeleton_key ON users (username_skeleton);
