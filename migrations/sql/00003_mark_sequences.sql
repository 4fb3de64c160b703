-- Record on each key sequence how seqrepo's writers use it: a line "seqrepo: pooled-lo 50" in
-- the sequence's COMMENT (idgen.Config.Marker). idgen.New reads it and refuses, with
-- idgen.ErrMixedConfig, a process configured with another optimizer or allocation size, which
-- would otherwise hand out keys that overlap those of the other processes.
--
-- A migration of its own rather than a change to 00002: goose never runs a version again once
-- it is applied, so databases migrated before the marker existed would never get it.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
	tbl text;
BEGIN
	FOREACH tbl IN ARRAY ARRAY['repositories', 'authors', 'commits', 'tenants'] LOOP
		EXECUTE format('COMMENT ON SEQUENCE %s IS %L', pg_get_serial_sequence(tbl, 'id')::regclass, 'seqrepo: pooled-lo 50');
	END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
	tbl text;
BEGIN
	FOREACH tbl IN ARRAY ARRAY['repositories', 'authors', 'commits', 'tenants'] LOOP
		EXECUTE format('COMMENT ON SEQUENCE %s IS NULL', pg_get_serial_sequence(tbl, 'id')::regclass);
	END LOOP;
END
$$;
-- +goose StatementEnd
