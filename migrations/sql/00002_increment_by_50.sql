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

-- Then, for each sequence whose next block could hold a key already in use, setval(seq, u),
-- where u is the highest key that may be in use: max(id), and what the sequence handed out,
-- which is last_value once it was called and at most last_value - 1 before (after RESTART or
-- setval(seq, v, false), when pg_sequence_last_value is NULL, so last_value and is_called are
-- read from the sequence itself). The next nextval is then v = u + 50, whose block is v..v+49
-- under pooled-lo and u+1..v under pooled (Hibernate's optimizer), above every key in use
-- either way, and never below what nextval would have returned anyway. The next block could
-- hold a key in use when its lowest key is u or less: that key is last_value + 1 once called;
-- before, last_value under pooled-lo (and under pooled for START, a block of its own) and
-- last_value - 49 under pooled. Adoption.Up applies the same rule to any table.
-- +goose StatementBegin
DO $$
DECLARE
	size   constant bigint := 50;
	tbl    text;
	seq    regclass;
	start  bigint;
	minv   bigint;
	last   bigint;
	called boolean;
	max_id bigint;
	used   bigint;
BEGIN
	FOREACH tbl IN ARRAY ARRAY['repositories', 'authors', 'commits', 'tenants'] LOOP
		seq := pg_get_serial_sequence(tbl, 'id')::regclass;
		SELECT s.seqstart, s.seqmin INTO start, minv FROM pg_sequence AS s WHERE s.seqrelid = seq;
		EXECUTE format('SELECT max(id) FROM %I', tbl) INTO max_id;
		EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
		used := greatest(max_id, CASE WHEN called THEN last WHEN last > minv THEN last - 1 END);
		IF used >= (CASE WHEN called THEN last::numeric + 1 WHEN last = start THEN last
				ELSE last::numeric - size + 1 END) THEN
			PERFORM setval(seq, greatest(used, minv)); -- MINVALUE bounds setval
		END IF;
	END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE repositories ALTER COLUMN id SET INCREMENT BY 1;
ALTER TABLE authors ALTER COLUMN id SET INCREMENT BY 1;
ALTER TABLE commits ALTER COLUMN id SET INCREMENT BY 1;
ALTER TABLE tenants ALTER COLUMN id SET INCREMENT BY 1;

-- Under INCREMENT 50 the last nextval v reserved v..v+49 for some writer (pooled-lo), which
-- may not have inserted them all yet. Move each sequence past the end of that block (capped
-- at MAXVALUE: the sequence is then exhausted, as it would have been at INCREMENT 50), or
-- past max(id) if that is higher, so that keys from DEFAULT under INCREMENT 1 come after
-- both. A sequence not called since RESTART or setval(seq, v, false) has handed out nothing
-- at or above v (last_value), which it hands out next: it moves only past max(id). Never
-- backwards. Adoption.Down applies the same rule to any table.
-- +goose StatementBegin
DO $$
DECLARE
	size   constant bigint := 50;
	tbl    text;
	seq    regclass;
	minv   bigint;
	maxv   bigint;
	last   bigint;
	called boolean;
	max_id bigint;
	used   bigint;
BEGIN
	FOREACH tbl IN ARRAY ARRAY['repositories', 'authors', 'commits', 'tenants'] LOOP
		seq := pg_get_serial_sequence(tbl, 'id')::regclass;
		SELECT s.seqmin, s.seqmax INTO minv, maxv FROM pg_sequence AS s WHERE s.seqrelid = seq;
		EXECUTE format('SELECT max(id) FROM %I', tbl) INTO max_id;
		EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
		used := greatest(max_id, CASE WHEN called THEN least(last::numeric + size - 1, maxv)::bigint
			WHEN last > minv THEN last - 1 END);
		IF used >= (CASE WHEN called THEN last::numeric + 1 ELSE last END) THEN
			PERFORM setval(seq, used);
		END IF;
	END LOOP;
END
$$;
-- +goose StatementEnd
