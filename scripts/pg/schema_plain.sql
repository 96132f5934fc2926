-- Baseline: the current state only, no history (what a plain application table costs).
CREATE TABLE vehicle (
    id  uuid PRIMARY KEY,
    doc jsonb NOT NULL
);
