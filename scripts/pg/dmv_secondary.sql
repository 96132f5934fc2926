-- DMV secondary owner (quill bench dmv's `secondary-owner`): the person's id by GovId, whether
-- they are a secondary owner of the registration (row locked), then added, or removed when
-- they already were (so every such transaction writes and the lists stay short).
\set v random(0, :preload - 1)
\set p (:v + 1 + random(0, 3)) % :preload
BEGIN;
SELECT id AS person_id FROM person WHERE doc->>'GovId' = 'GOV' || lpad(:p::text, 9, '0') \gset
SELECT ((doc->'Owners'->'SecondaryOwners') @> jsonb_build_array(jsonb_build_object('PersonId', ':person_id')))::int AS registered FROM vehicle_registration WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0') FOR UPDATE \gset
\if :registered
UPDATE vehicle_registration SET doc = jsonb_set(doc, '{Owners,SecondaryOwners}', (SELECT coalesce(jsonb_agg(o), '[]'::jsonb) FROM jsonb_array_elements(doc->'Owners'->'SecondaryOwners') AS o WHERE o->>'PersonId' <> ':person_id')) WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0');
\else
UPDATE vehicle_registration SET doc = jsonb_insert(doc, '{Owners,SecondaryOwners,-1}', jsonb_build_object('PersonId', ':person_id'), true) WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0');
\endif
COMMIT;
