-- Variant B: variant A plus a SHA-256 hash chain over the history rows. Each row stores
-- sha256(prev_hash || row); the chain head is one row locked FOR UPDATE, which serialises
-- writers exactly as a real chain must (two rows cannot share a predecessor).
CREATE TABLE vehicle (
    id  uuid PRIMARY KEY,
    doc jsonb NOT NULL
);

CREATE TABLE vehicle_history (
    seq        bigint      PRIMARY KEY,
    id         uuid        NOT NULL,
    version    integer     NOT NULL,
    doc        jsonb       NOT NULL,
    op         text        NOT NULL,
    changed_at timestamptz NOT NULL,
    prev_hash  bytea       NOT NULL,
    hash       bytea       NOT NULL
);
CREATE INDEX vehicle_history_id_version ON vehicle_history (id, version);

CREATE TABLE chain_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint  NOT NULL,
    hash     bytea   NOT NULL
);
INSERT INTO chain_head VALUES (true, 0, sha256(''::bytea));

CREATE FUNCTION vehicle_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head      chain_head%ROWTYPE;
    version   integer;
    row_bytes bytea;
    row_hash  bytea;
BEGIN
    SELECT * INTO head FROM chain_head WHERE only_row FOR UPDATE;
    version := COALESCE((SELECT max(h.version) + 1 FROM vehicle_history h WHERE h.id = NEW.id), 0);
    row_bytes := convert_to(concat_ws('|', head.seq + 1, NEW.id, version, NEW.doc::text, TG_OP, now()), 'UTF8');
    row_hash := sha256(head.hash || row_bytes);
    INSERT INTO vehicle_history VALUES (head.seq + 1, NEW.id, version, NEW.doc, TG_OP, now(), head.hash, row_hash);
    UPDATE chain_head SET seq = head.seq + 1, hash = row_hash WHERE only_row;
    RETURN NULL;
END
$$;

CREATE TRIGGER vehicle_audit AFTER INSERT OR UPDATE ON vehicle
    FOR EACH ROW EXECUTE FUNCTION vehicle_audit();
