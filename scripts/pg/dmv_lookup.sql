-- DMV lookup (quill bench dmv's `lookup`): a vehicle by VIN and a person by GovId.
\set v random(0, :preload - 1)
\set p random(0, :preload - 1)
BEGIN;
SELECT doc FROM vehicle WHERE doc->>'VIN' = '1N4AL11D' || lpad(:v::text, 9, '0');
SELECT doc FROM person WHERE doc->>'GovId' = 'GOV' || lpad(:p::text, 9, '0');
COMMIT;
