-- One single-document update transaction on a random preloaded document. pgbench -D preload=N.
\set k random(1, :preload)
\set n random(1, 1000000000)
UPDATE vehicle SET doc = jsonb_build_object('VIN', '1N4AL11D' || lpad(:k::text, 9, '0'), 'Make', 'Quill', 'Year', 2000 + :n % 25, 'Color', 'Blue', 'Mileage', :n::bigint * 7919 % 200000) WHERE id = md5(:k::text)::uuid;
