package repo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// BenchmarkReference measures, on the same tables and rows as BenchmarkInsert and
// BenchmarkUpsert, the two hand-written references seqbench compares seqrepo with:
// raw-copy (pgx CopyFrom, keys from the IDENTITY default: the speed limit for Copy)
// and pivot-reference (COPY into a temporary table, then INSERT … SELECT … ON
// CONFLICT DO NOTHING, with half the rows already present: the reference for Upsert).
// Compare with benchstat.
func BenchmarkReference(b *testing.B) {
	ctx := context.Background()
	connect := func(b *testing.B) *pgx.Conn {
		conn, err := pgx.Connect(ctx, pgtest.NewDatabase(b, schemaTemplate))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	rowsOf := func(i, n int) [][]any {
		rows := make([][]any, n)
		for j := range rows {
			code := fmt.Sprintf("i%d-r%d", i, j)
			rows[j] = []any{code, "name " + code, int64(j)}
		}
		return rows
	}
	cols := []string{"code", "name", "size"}

	b.Run("raw-copy", func(b *testing.B) {
		conn := connect(b)
		for i := 0; b.Loop(); i++ {
			if _, err := conn.CopyFrom(ctx, pgx.Identifier{"bench_identities"}, cols, pgx.CopyFromRows(rowsOf(i, benchRows))); err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b)
	})

	b.Run("pivot-reference/do-nothing", func(b *testing.B) {
		conn := connect(b)
		// Iteration i writes the second half of i-1's codes again and half new ones,
		// as BenchmarkUpsert does.
		prev := rowsOf(-1, benchRows)
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"bench_identities"}, cols, pgx.CopyFromRows(prev)); err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			rows := append(rowsOf(i, benchRows/2), prev[benchRows/2:]...)
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `CREATE TEMP TABLE pivot (code text, name text, size bigint) ON COMMIT DROP`); err != nil {
					return err
				}
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pivot"}, cols, pgx.CopyFromRows(rows)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO bench_identities (code, name, size) SELECT code, name, size FROM pivot ON CONFLICT (code) DO NOTHING`)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			prev = append(rowsOf(i, benchRows/2), rows[:benchRows/2]...)
		}
		reportRows(b)
	})
}
