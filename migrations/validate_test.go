package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
)

type (
	goodModel struct {
		ID   int64 `idgen:"sequence:good_seq;allocationSize:50"`
		Name string
	}
	mismatchModel struct {
		ID int64 `idgen:"sequence:inc_seq;allocationSize:50"`
	}
	missingModel struct {
		ID int64 `idgen:"sequence:missing_seq;allocationSize:50"`
	}
	cycleModel struct {
		ID int64 `idgen:"sequence:cycle_seq;allocationSize:50"`
	}
	notSequenceModel struct {
		ID int64 `idgen:"sequence:plain_table;allocationSize:50"`
	}
	untaggedModel struct {
		ID int64 `gorm:"primaryKey"`
	}
	malformedModel struct {
		ID int64 `idgen:"sequence:good_seq;allocationSize:zero"`
	}
	twoKeysModel struct {
		A int64 `idgen:"sequence:good_seq;allocationSize:50"`
		B int64 `idgen:"sequence:good_seq;allocationSize:50"`
	}
	stringKeyModel struct {
		ID string `idgen:"sequence:good_seq;allocationSize:50"`
	}
	embeddedBase struct {
		ID int64 `idgen:"sequence:good_seq;allocationSize:50"`
	}
	embeddedKeyModel struct {
		*embeddedBase
		Name string
	}
)

func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := freshDB(t)
	exec(t, db,
		`CREATE SEQUENCE good_seq INCREMENT BY 50`,
		`CREATE SEQUENCE inc_seq`,
		`CREATE SEQUENCE cycle_seq INCREMENT BY 50 CYCLE`,
		`CREATE TABLE plain_table (id bigint)`,
		`CREATE TABLE good_models (id bigint PRIMARY KEY, name text)`,
	)

	err := migrations.Validate(ctx, db,
		&goodModel{}, &mismatchModel{}, missingModel{}, &cycleModel{}, &notSequenceModel{},
		&untaggedModel{}, &malformedModel{}, &twoKeysModel{}, &stringKeyModel{}, embeddedKeyModel{},
		nil, 42,
	)
	var verr *idgen.CheckError
	require.ErrorAs(t, err, &verr)
	var got []string
	for _, p := range verr.Problems {
		got = append(got, p.(*idgen.KeyError).Model)
	}
	// embeddedKeyModel's key is in an unexported embedded struct, which GORM does not
	// map: the plugin never sees the tag, so Validate refuses it too.
	assert.Equal(t, []string{
		"migrations_test.mismatchModel", "migrations_test.missingModel", "migrations_test.cycleModel",
		"migrations_test.notSequenceModel", "migrations_test.untaggedModel", "migrations_test.malformedModel",
		"migrations_test.twoKeysModel", "migrations_test.stringKeyModel", "migrations_test.embeddedKeyModel", "<nil>", "int",
	}, got, "one problem per bad model, in order; the good ones are not listed")

	// errors.Is finds every kind of problem in the one error.
	for _, sentinel := range []error{
		idgen.ErrIncrementMismatch, idgen.ErrSequenceNotFound, idgen.ErrCycle,
		idgen.ErrInvalidConfig, migrations.ErrNoTag,
	} {
		assert.ErrorIs(t, err, sentinel)
	}
	assert.ErrorIs(t, verr.Problems[0], idgen.ErrIncrementMismatch)
	assert.ErrorIs(t, verr.Problems[1], idgen.ErrSequenceNotFound)
	assert.ErrorIs(t, verr.Problems[2], idgen.ErrCycle)
	assert.ErrorIs(t, verr.Problems[3], idgen.ErrSequenceNotFound)
	assert.ErrorIs(t, verr.Problems[5], idgen.ErrInvalidConfig)
	for _, i := range []int{4, 6, 7, 8, 9, 10} {
		assert.ErrorIs(t, verr.Problems[i], migrations.ErrNoTag, verr.Problems[i].Error())
	}

	// The mismatch carries both numbers, and the message names model, field and sequence.
	var mismatch *idgen.IncrementMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.Equal(t, int64(1), mismatch.Increment)
	assert.Equal(t, 50, mismatch.AllocationSize)
	first := verr.Problems[0].(*idgen.KeyError)
	assert.Equal(t, "inc_seq", first.Sequence)
	assert.Equal(t, "ID", first.Field)
	msg := err.Error()
	for _, want := range []string{
		"migrations_test.mismatchModel.ID (table mismatch_models, column id, sequence inc_seq)", "INCREMENT 1", "AllocationSize is 50",
		`fix: migrations.NewAdoption(migrations.AdoptConfig{Table: "mismatch_models", Column: "id", AllocationSize: 50})`,
		"migrations_test.missingModel.ID (table missing_models, column id, sequence missing_seq)",
		"migrations_test.cycleModel.ID (table cycle_models, column id, sequence cycle_seq)",
		"migrations_test.twoKeysModel", "(A, B)",
		"key ID is string",
		"embeddedBase.ID has an idgen tag, but GORM does not map it",
	} {
		assert.Contains(t, msg, want)
	}
	t.Log(msg)
}

func TestValidateModels(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("migrated", func(t *testing.T) {
		t.Parallel()
		require.NoError(t, migrations.Validate(ctx, migratedDB(t), models.All()...))
	})

	t.Run("before 00002", func(t *testing.T) {
		t.Parallel()
		db := freshDB(t)
		p, err := migrations.NewProvider(db)
		require.NoError(t, err)
		_, err = p.UpTo(ctx, 1)
		require.NoError(t, err)
		err = migrations.Validate(ctx, db, models.All()...)
		var verr *idgen.CheckError
		require.ErrorAs(t, err, &verr)
		require.Len(t, verr.Problems, len(models.All()), "every model is listed")
		for i, want := range []string{"models.Repository", "models.Author", "models.Commit", "models.Tenant"} {
			assert.Equal(t, want, verr.Problems[i].(*idgen.KeyError).Model)
			var mismatch *idgen.IncrementMismatchError
			require.ErrorAs(t, verr.Problems[i], &mismatch)
			assert.Equal(t, int64(1), mismatch.Increment)
			assert.Equal(t, 50, mismatch.AllocationSize)
		}
	})

	t.Run("no tables", func(t *testing.T) {
		t.Parallel()
		err := migrations.Validate(ctx, freshDB(t), models.All()...)
		assert.ErrorIs(t, err, idgen.ErrSequenceNotFound)
		assert.Len(t, err.(*idgen.CheckError).Problems, 4)
	})

	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		db := migratedDB(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := migrations.Validate(cctx, db, models.All()...)
		assert.True(t, errors.Is(err, context.Canceled), "%v", err)
		var verr *idgen.CheckError
		assert.False(t, errors.As(err, &verr), "a cancelled check reports no problems")
	})
}
