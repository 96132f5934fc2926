-- DMV history read (quill bench dmv's `history`): the registration's id by VIN, then every
-- revision of it from the audit table.
\set v random(0, :preload - 1)
BEGIN;
SELECT id AS registration_id FROM vehicle_registration WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0') \gset
SELECT version, doc, changed_at FROM history WHERE id = ':registration_id' ORDER BY version;
COMMIT;
