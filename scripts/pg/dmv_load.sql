-- Preloads :preload each of persons, vehicles, registrations and driver's licences (psql -v
-- preload=N), numbered from 0 with the GovIds, VINs and plates `quill bench dmv` uses.
INSERT INTO person
SELECT md5('person' || k)::uuid,
       jsonb_build_object('FirstName', 'First' || k, 'LastName', 'Last' || k,
                          'DOB', make_date(1940 + k % 60, 1 + k % 12, 1 + k % 28),
                          'GovId', 'GOV' || lpad(k::text, 9, '0'), 'GovIdType', 'Driver License',
                          'Address', (1 + k % 9000) || ' University Street, Seattle, WA, 98109')
FROM generate_series(0, :preload - 1) AS k;

INSERT INTO vehicle
SELECT md5('vehicle' || k)::uuid,
       jsonb_build_object('VIN', '1N4AL11D' || lpad(k::text, 9, '0'), 'Type', 'Sedan',
                          'Year', 2000 + k % 25, 'Make', 'Audi', 'Model', 'A5', 'Color', 'Silver')
FROM generate_series(0, :preload - 1) AS k;

INSERT INTO vehicle_registration
SELECT md5('registration' || k)::uuid,
       jsonb_build_object('VIN', '1N4AL11D' || lpad(k::text, 9, '0'),
                          'LicensePlateNumber', 'PL' || lpad(k::text, 8, '0'),
                          'State', 'WA', 'City', 'Seattle', 'PendingPenaltyTicketAmount', 90.25,
                          'ValidFromDate', '2017-08-21', 'ValidToDate', '2020-05-11',
                          'Owners', jsonb_build_object(
                              'PrimaryOwner', jsonb_build_object('PersonId', md5('person' || k)::uuid),
                              'SecondaryOwners', '[]'::jsonb))
FROM generate_series(0, :preload - 1) AS k;

INSERT INTO drivers_license
SELECT md5('license' || k)::uuid,
       jsonb_build_object('PersonId', md5('person' || k)::uuid,
                          'LicenseNumber', 'GOV' || lpad(k::text, 9, '0'), 'LicenseType', 'Full',
                          'ValidFromDate', '2016-12-20', 'ValidToDate', '2026-11-15')
FROM generate_series(0, :preload - 1) AS k;
