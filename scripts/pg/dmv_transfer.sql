-- DMV ownership transfer (quill bench dmv's `transfer`): the registration's primary owner by
-- VIN (row locked: PostgreSQL's way to make this read-modify-write safe, where Quill uses
-- OCC), that person by id, the new owner's id by GovId, then the update.
\set v random(0, :preload - 1)
\set p random(0, :preload - 1)
BEGIN;
SELECT doc->'Owners'->'PrimaryOwner'->>'PersonId' AS owner FROM vehicle_registration WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0') FOR UPDATE \gset
SELECT doc->>'GovId' AS owner_gov_id FROM person WHERE id = ':owner' \gset
SELECT id AS new_owner FROM person WHERE doc->>'GovId' = 'GOV' || lpad(:p::text, 9, '0') \gset
UPDATE vehicle_registration SET doc = jsonb_set(doc, '{Owners,PrimaryOwner,PersonId}', to_jsonb(':new_owner'::text)) WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0');
COMMIT;
