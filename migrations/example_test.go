package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
)

func ExampleUp() {
	ctx := context.Background()
	db, err := sql.Open("pgx", exampleDSN)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	// At startup, in every instance: migrate (only one instance applies anything), then
	// check that every model's sequence matches its idgen tag.
	if err := migrations.Up(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	if err := migrations.Validate(ctx, db, models.All()...); err != nil {
		fmt.Println(err)
		return
	}

	var increment int64
	err = db.QueryRowContext(ctx, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'commits_id_seq'`).Scan(&increment)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("commits_id_seq INCREMENT", increment)
	// Output: commits_id_seq INCREMENT 50
}

func ExampleAdoption_Migration() {
	ctx := context.Background()
	db, err := sql.Open("pgx", exampleDSN)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	// An application's own table, with a key inserted explicitly above its sequence.
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS invoices (id bigserial PRIMARY KEY);
		INSERT INTO invoices (id) VALUES (700) ON CONFLICT DO NOTHING`); err != nil {
		fmt.Println(err)
		return
	}

	// The application's goose migrations include the adoption of seqrepo on invoices.
	adopt, err := migrations.NewAdoption(migrations.AdoptConfig{Table: "invoices", Column: "id", AllocationSize: 50})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, nil,
		goose.WithTableName("invoices_versions"),
		goose.WithGoMigrations(adopt.Migration(1)),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := p.Up(ctx); err != nil {
		fmt.Println(err)
		return
	}

	var increment, last int64
	err = db.QueryRowContext(ctx, `SELECT increment_by, last_value FROM pg_sequences WHERE sequencename = 'invoices_id_seq'`).Scan(&increment, &last)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("INCREMENT %d, next block starts at %d\n", increment, last+increment)
	// Output: INCREMENT 50, next block starts at 750
}

func ExampleValidate() {
	ctx := context.Background()
	db, err := sql.Open("pgx", exampleDSN)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	// A table of the application's own whose sequence still has INCREMENT 1.
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS receipts (id bigserial PRIMARY KEY)`); err != nil {
		fmt.Println(err)
		return
	}

	// At startup: every problem at once, in one *idgen.CheckError with one
	// *idgen.KeyError per model; its Hint is the migrations.NewAdoption call that fixes it.
	err = migrations.Validate(ctx, db, &models.Commit{}, &Receipt{})
	var check *idgen.CheckError
	var key *idgen.KeyError
	fmt.Println(errors.As(err, &check), len(check.Problems))
	fmt.Println(errors.As(err, &key), key.Table, key.Column)
	fmt.Println(errors.Is(err, idgen.ErrIncrementMismatch))
	// Output:
	// true 1
	// true receipts id
	// true
}

// Receipt's key is a bigserial column: its tag names no sequence, so the column's own.
type Receipt struct {
	ID int64 `gorm:"primaryKey" idgen:"allocationSize:50"`
}
