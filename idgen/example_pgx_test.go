package idgen_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// DBTX, Queries, CopyCommitsParams and iteratorForCopyCommits are what sqlc generates
// for pgx/v5 from
//
//	-- name: CopyCommits :copyfrom
//	INSERT INTO commits (id, sha) VALUES ($1, $2);
type DBTX interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// sqlc's DBTX is a PgxQuerier: idgen takes what sqlc code already holds.
var _ idgen.PgxQuerier = DBTX(nil)

func New(db DBTX) *Queries { return &Queries{db: db} }

type Queries struct{ db DBTX }

type CopyCommitsParams struct {
	ID  int64
	Sha string
}

type iteratorForCopyCommits struct {
	rows                 []CopyCommitsParams
	skippedFirstNextCall bool
}

func (r *iteratorForCopyCommits) Next() bool {
	if len(r.rows) == 0 {
		return false
	}
	if !r.skippedFirstNextCall {
		r.skippedFirstNextCall = true
		return true
	}
	r.rows = r.rows[1:]
	return len(r.rows) > 0
}

func (r iteratorForCopyCommits) Values() ([]interface{}, error) {
	return []interface{}{r.rows[0].ID, r.rows[0].Sha}, nil
}

func (r iteratorForCopyCommits) Err() error { return nil }

func (q *Queries) CopyCommits(ctx context.Context, arg []CopyCommitsParams) (int64, error) {
	return q.db.CopyFrom(ctx, []string{"commits"}, []string{"id", "sha"}, &iteratorForCopyCommits{rows: arg})
}

// Keys from idgen for sqlc's CopyFrom, inside a pgx transaction. WithTx(tx) refills on
// the transaction, so this works even when tx holds the pool's last connection.
func ExampleAllocator_WithTx_pgx() {
	ctx := context.Background()
	pool := examplePool(`CREATE SEQUENCE commits_id_seq INCREMENT BY 50`,
		`CREATE TABLE commits (id bigint PRIMARY KEY, sha text NOT NULL)`)
	defer pool.Close()

	alloc, err := idgen.New(ctx, pool, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50})
	if err != nil {
		fmt.Println(err)
		return
	}
	shas := []string{"9fceb02", "4b825dc", "e69de29"}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		ids, err := alloc.WithTx(tx).NextN(ctx, len(shas))
		if err != nil {
			return err
		}
		rows := make([]CopyCommitsParams, len(shas))
		for i, sha := range shas {
			rows[i] = CopyCommitsParams{ID: ids[i], Sha: sha}
		}
		n, err := New(tx).CopyCommits(ctx, rows)
		fmt.Println("copied", n, "commits with keys", ids)
		return err
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	var first string
	if err := pool.QueryRow(ctx, `SELECT sha FROM commits WHERE id = 1`).Scan(&first); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("commit 1 is", first)
	// Output:
	// copied 3 commits with keys [1 2 3]
	// commit 1 is 9fceb02
}

// examplePool gives an Example function, which has no *testing.T, a pgx pool on a
// database of its own on the shared test server, with setup run in it. pgtest.Run
// drops the database after all the tests.
func examplePool(setup ...string) *pgxpool.Pool {
	ctx := context.Background()
	dsn, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		panic(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		panic(err)
	}
	for _, stmt := range setup {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			panic(err)
		}
	}
	return pool
}
