-- The QLDB vehicle-registration (DMV) sample on the audit-table recipe, for
-- `scripts/pg_compare.sh --dmv`: the sample's four tables as JSONB documents, an expression
-- index per field QLDB indexes, and every insert and update copied into one history table by
-- a trigger (as schema_audit.sql does for the single-table workload).
CREATE TABLE person (id uuid PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE vehicle (id uuid PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE vehicle_registration (id uuid PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE drivers_license (id uuid PRIMARY KEY, doc jsonb NOT NULL);

CREATE INDEX person_gov_id ON person ((doc->>'GovId'));
CREATE INDEX vehicle_vin ON vehicle ((doc->>'VIN'));
CREATE INDEX vehicle_registration_vin ON vehicle_registration ((doc->>'VIN'));
CREATE INDEX vehicle_registration_plate ON vehicle_registration ((doc->>'LicensePlateNumber'));
CREATE INDEX drivers_license_number ON drivers_license ((doc->>'LicenseNumber'));
CREATE INDEX drivers_license_person ON drivers_license ((doc->>'PersonId'));

-- Ids are unique across the four tables (uuids), so (id, version) finds a document's history.
CREATE TABLE history (
    seq        bigserial   PRIMARY KEY,
    table_name text        NOT NULL,
    id         uuid        NOT NULL,
    version    integer     NOT NULL,
    doc        jsonb       NOT NULL,
    op         text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_id_version ON history (id, version);

CREATE FUNCTION dmv_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO history (table_name, id, version, doc, op)
    VALUES (TG_TABLE_NAME,
            NEW.id,
            COALESCE((SELECT max(version) + 1 FROM history WHERE id = NEW.id), 0),
            NEW.doc,
            TG_OP);
    RETURN NULL;
END
$$;

CREATE TRIGGER person_audit AFTER INSERT OR UPDATE ON person
    FOR EACH ROW EXECUTE FUNCTION dmv_audit();
CREATE TRIGGER vehicle_audit AFTER INSERT OR UPDATE ON vehicle
    FOR EACH ROW EXECUTE FUNCTION dmv_audit();
CREATE TRIGGER vehicle_registration_audit AFTER INSERT OR UPDATE ON vehicle_registration
    FOR EACH ROW EXECUTE FUNCTION dmv_audit();
CREATE TRIGGER drivers_license_audit AFTER INSERT OR UPDATE ON drivers_license
    FOR EACH ROW EXECUTE FUNCTION dmv_audit();
