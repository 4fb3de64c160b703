package idgen_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/seqrepo/seqrepo/idgen"
)

func ExampleNew() {
	db, drop := exampleDB(`CREATE SEQUENCE commits_id_seq INCREMENT BY 50`)
	defer drop()
	ctx := context.Background()

	alloc, err := idgen.New(ctx, db, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		id, err := alloc.Next(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(id)
	}
	// One round trip reserved the block of these keys and, in the same statement, two
	// more ahead of demand (prefetch): the pool stays above its watermark.
	fmt.Printf("%+v\n", alloc.Stats())

	// An allocation size that differs from the INCREMENT is refused.
	_, err = idgen.New(ctx, db, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 10})
	fmt.Println(errors.Is(err, idgen.ErrIncrementMismatch))
	// Output:
	// 1
	// 2
	// 3
	// {RoundTrips:1 Blocks:3 Keys:3 ForegroundRoundTrips:1 BackgroundRoundTrips:0 Waits:1 PrefetchErrors:0}
	// true
}

func ExampleAllocator_NextN() {
	db, drop := exampleDB(`CREATE SEQUENCE commits_id_seq INCREMENT BY 50`)
	defer drop()
	ctx := context.Background()

	alloc, err := idgen.New(ctx, db, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50})
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, err := alloc.NextN(ctx, 10000) // 200 blocks and 2 ahead of demand, one round trip
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(ids), ids[0], ids[len(ids)-1])
	fmt.Printf("%+v\n", alloc.Stats())
	// Output:
	// 10000 1 10000
	// {RoundTrips:1 Blocks:202 Keys:10000 ForegroundRoundTrips:1 BackgroundRoundTrips:0 Waits:1 PrefetchErrors:0}
}

func ExampleAllocator_WithTx() {
	db, drop := exampleDB(
		`CREATE SEQUENCE commits_id_seq INCREMENT BY 50`,
		`CREATE TABLE commits (id bigint PRIMARY KEY, message text NOT NULL)`,
	)
	defer drop()
	db.SetMaxOpenConns(1) // the transaction below holds the only connection
	ctx := context.Background()

	alloc, err := idgen.New(ctx, db, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50})
	if err != nil {
		fmt.Println(err)
		return
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tx.Rollback()

	messages := []string{"initial commit", "add README", "fix typo"}
	ids, err := alloc.WithTx(tx).NextN(ctx, len(messages)) // refills on tx, not on the pool
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO commits (id, message) SELECT * FROM unnest($1::bigint[], $2::text[])`,
		ids, messages); err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Commit(); err != nil {
		fmt.Println(err)
		return
	}
	rows, err := db.QueryContext(ctx, `SELECT id, message FROM commits ORDER BY id`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var message string
		if err := rows.Scan(&id, &message); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(id, message)
	}
	// Output:
	// 1 initial commit
	// 2 add README
	// 3 fix typo
}
