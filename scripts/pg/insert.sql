-- One single-document insert transaction (pgbench script; autocommit = one transaction).
\set n random(1, 1000000000)
INSERT INTO vehicle (id, doc) VALUES (gen_random_uuid(), jsonb_build_object('VIN', '1N4AL11D' || lpad(:n::text, 9, '0'), 'Make', 'Quill', 'Year', 2000 + :n % 25, 'Color', 'Red', 'Mileage', :n::bigint * 7919 % 200000));
