-- Keys made since keyed tags exist are marked: while a live key without a tag remains, such
-- keys are still looked up; once none is left, an untagged key is refused without a lookup.
ALTER TABLE api_keys ADD COLUMN tagged INTEGER NOT NULL DEFAULT 0;
