-- The confusable skeleton of each username (Unicode UTS #39 §4, made case-blind): `rоot`
-- with a Cyrillic о, `r00t` and `ROOT` share the skeleton of `root`. A unique index on it
-- (0016) refuses a new name that looks like an existing one, atomically, on every replica.
-- NULL until Tessera fills it in for accounts named before this column (at start-up, in the
-- background); an older account whose skeleton another already holds keeps NULL, and still
-- logs in. A column without a default changes the catalogue only.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
