-- Variant A: the audit-table recipe AWS recommended as QLDB's replacement. Current state in
-- a JSONB table; every insert and update copied into a history table by a trigger.
CREATE TABLE vehicle (
    id  uuid PRIMARY KEY,
    doc jsonb NOT NULL
);

CREATE TABLE vehicle_history (
    seq        bigserial PRIMARY KEY,
    id         uuid        NOT NULL,
    version    integer     NOT NULL,
    doc        jsonb       NOT NULL,
    op         text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
-- Finds a document's latest version without scanning the history.
CREATE INDEX vehicle_history_id_version ON vehicle_history (id, version);

CREATE FUNCTION vehicle_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO vehicle_history (id, version, doc, op)
    VALUES (NEW.id,
            COALESCE((SELECT max(version) + 1 FROM vehicle_history WHERE id = NEW.id), 0),
            NEW.doc,
            TG_OP);
    RETURN NULL;
END
$$;

CREATE TRIGGER vehicle_audit AFTER INSERT OR UPDATE ON vehicle
    FOR EACH ROW EXECUTE FUNCTION vehicle_audit();
