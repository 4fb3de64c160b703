package migrations_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
)

// sequenceComment returns the COMMENT of the sequence named by the regclass text seq.
func sequenceComment(t *testing.T, db *sql.DB, seq string) sql.NullString {
	t.Helper()
	var c sql.NullString
	require.NoError(t, db.QueryRowContext(t.Context(), `SELECT obj_description($1::regclass, 'pg_class')`, seq).Scan(&c))
	return c
}

// TestMigrationsMarkSequences: migration 00003 records the models' configuration on each
// key sequence, so that idgen.New refuses a process configured otherwise; its Down
// removes the marker.
func TestMigrationsMarkSequences(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := freshDB(t)
	require.NoError(t, migrations.Up(ctx, db))
	for _, seq := range []string{"repositories_id_seq", "authors_id_seq", "commits_id_seq", "tenants_id_seq"} {
		assert.Equal(t, sql.NullString{String: "seqrepo: pooled-lo 50", Valid: true}, sequenceComment(t, db, seq), seq)
	}
	_, err := idgen.New(ctx, db, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50, Optimizer: idgen.Pooled})
	assert.ErrorIs(t, err, idgen.ErrMixedConfig, "a pooled writer of a sequence marked pooled-lo")
	require.NoError(t, migrations.Validate(ctx, db, models.All()...), "the models match the markers")

	p, err := migrations.NewProvider(db)
	require.NoError(t, err)
	_, err = p.DownTo(ctx, 2)
	require.NoError(t, err)
	assert.False(t, sequenceComment(t, db, "commits_id_seq").Valid, "after 00003 Down")
}

// TestAdoptionMarksSequence: Adoption.Up records the optimizer and allocation size on the
// sequence, keeping the rest of its comment; Down removes only the marker.
func TestAdoptionMarksSequence(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := freshDB(t)
	_, err := db.ExecContext(ctx, `CREATE TABLE orders (id bigserial PRIMARY KEY);
		COMMENT ON SEQUENCE orders_id_seq IS 'owned by the billing team'`)
	require.NoError(t, err)
	a, err := migrations.NewAdoption(migrations.AdoptConfig{Table: "orders", Column: "id", AllocationSize: 50, Optimizer: idgen.Pooled})
	require.NoError(t, err)
	require.NoError(t, inTx(t, db, func(tx *sql.Tx) error { return a.Up(ctx, tx) }))
	assert.Equal(t, "seqrepo: pooled 50\nowned by the billing team", sequenceComment(t, db, "orders_id_seq").String)
	// Up again replaces the marker rather than adding a second one.
	require.NoError(t, inTx(t, db, func(tx *sql.Tx) error { return a.Up(ctx, tx) }))
	assert.Equal(t, "seqrepo: pooled 50\nowned by the billing team", sequenceComment(t, db, "orders_id_seq").String)

	_, err = idgen.New(ctx, db, idgen.Config{Sequence: "orders_id_seq", AllocationSize: 50})
	var mm *idgen.MarkerMismatchError
	require.True(t, errors.As(err, &mm), "New with pooled-lo on a sequence marked pooled: %v", err)
	_, err = idgen.New(ctx, db, idgen.Config{Sequence: "orders_id_seq", AllocationSize: 50, Optimizer: idgen.Pooled})
	require.NoError(t, err)

	require.NoError(t, inTx(t, db, func(tx *sql.Tx) error { return a.Down(ctx, tx) }))
	assert.Equal(t, "owned by the billing team", sequenceComment(t, db, "orders_id_seq").String)

	_, err = migrations.NewAdoption(migrations.AdoptConfig{Table: "orders", Column: "id", AllocationSize: 50, Optimizer: idgen.Optimizer(9)})
	assert.ErrorIs(t, err, migrations.ErrInvalidAdoption)
}
