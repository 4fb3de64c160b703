-- Adopt seqrepo: every key sequence hands out blocks of 50 keys per nextval, the allocation
-- size in the models' idgen tags (idgen:"sequence:<table>_id_seq;allocationSize:50").
-- The INCREMENT and the allocation size must be equal, or two writers get overlapping keys.
--
-- The whole migration runs in one transaction. Each ALTER TABLE ... SET INCREMENT BY takes an
-- ACCESS EXCLUSIVE lock on its table and a SHARE ROW EXCLUSIVE lock on its sequence until
-- commit, so no row and no nextval can slip in between reading max(id) and setval below.

-- +goose Up
ALTER TABLE repositories ALTER COLUMN id SET INCREMENT BY 50;
ALTER TABLE authors ALTER COLUMN id SET INCREMENT BY 50;
ALTER TABLE commits ALTER COLUMN id SET INCREMENT BY 50;
ALTER TABLE tenants ALTER COLUMN id SET INCREMENT BY 50;

-- Rows inserted with explicit keys can lie above everything the sequence has handed out.
-- For those sequences only, setval(seq, max(id)): the next nextval is then v = max(id) + 50,
-- whose block is v..v+49 under pooled-lo and max(id)+1..v under pooled (Hibernate's
-- optimizer), above every existing key either way. Every other sequence needs nothing: its
-- next value is last_value + 50 (or its start, if it was never used) and every key is at or
-- below last_value (below the start).
SELECT setval(k.seq, k.max_id)
FROM (VALUES
        (pg_get_serial_sequence('repositories', 'id')::regclass, (SELECT max(id) FROM repositories)),
        (pg_get_serial_sequence('authors', 'id')::regclass, (SELECT max(id) FROM authors)),
        (pg_get_serial_sequence('commits', 'id')::regclass, (SELECT max(id) FROM commits)),
        (pg_get_serial_sequence('tenants', 'id')::regclass, (SELECT max(id) FROM tenants))
     ) AS k (seq, max_id)
JOIN pg_sequence AS p ON p.seqrelid = k.seq
WHERE k.max_id > coalesce(pg_sequence_last_value(k.seq), p.seqstart - 1);

-- +goose Down
ALTER TABLE repositories ALTER COLUMN id SET INCREMENT BY 1;
ALTER TABLE authors ALTER COLUMN id SET INCREMENT BY 1;
ALTER TABLE commits ALTER COLUMN id SET INCREMENT BY 1;
ALTER TABLE tenants ALTER COLUMN id SET INCREMENT BY 1;

-- Under INCREMENT 50 the last nextval v reserved v..v+49 for some writer (pooled-lo), which
-- may not have inserted them all yet. Move each sequence to the end of that block, or to
-- max(id) if that is higher, so that keys from DEFAULT under INCREMENT 1 come after both.
SELECT setval(k.seq, greatest(k.max_id, pg_sequence_last_value(k.seq) + 49))
FROM (VALUES
        (pg_get_serial_sequence('repositories', 'id')::regclass, (SELECT max(id) FROM repositories)),
        (pg_get_serial_sequence('authors', 'id')::regclass, (SELECT max(id) FROM authors)),
        (pg_get_serial_sequence('commits', 'id')::regclass, (SELECT max(id) FROM commits)),
        (pg_get_serial_sequence('tenants', 'id')::regclass, (SELECT max(id) FROM tenants))
     ) AS k (seq, max_id)
JOIN pg_sequence AS p ON p.seqrelid = k.seq
WHERE greatest(k.max_id, pg_sequence_last_value(k.seq) + 49)
      > coalesce(pg_sequence_last_value(k.seq), p.seqstart - 1);
