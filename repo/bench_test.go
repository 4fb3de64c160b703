package repo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
)

// The benchmarks write benchRows rows per operation into two tables of the same shape:
// one keyed by IDENTITY (GORM's default way) and one keyed by a sequence with
// INCREMENT 50 through the plugin. Compare runs with benchstat.

const benchRows = 2000

// BenchIdentity is keyed by an IDENTITY column, read back with RETURNING.
type BenchIdentity struct {
	ID   int64 `gorm:"primaryKey"`
	Code string
	Name string
	Size int64
}

// BenchRow has the same columns, keyed by idgen.
type BenchRow struct {
	ID   int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:bench_rows_id_seq;allocationSize:50"`
	Code string
	Name string
	Size int64
}

// benchCodes returns n rows of type T with codes unique to iteration i.
func benchCodes[T any](i, n int, set func(*T, string, int)) []T {
	rows := make([]T, n)
	for j := range rows {
		set(&rows[j], fmt.Sprintf("i%d-r%d", i, j), j)
	}
	return rows
}

func setIdentity(r *BenchIdentity, code string, j int) {
	*r = BenchIdentity{Code: code, Name: "name " + code, Size: int64(j)}
}

func setRow(r *BenchRow, code string, j int) {
	*r = BenchRow{Code: code, Name: "name " + code, Size: int64(j)}
}

func reportRows(b *testing.B) {
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkInsert(b *testing.B) {
	ctx := context.Background()
	b.Run("gorm-create-row-by-row-identity", func(b *testing.B) {
		db, _ := open(b)
		for i := 0; b.Loop(); i++ {
			rows := benchCodes(i, benchRows, setIdentity)
			for j := range rows {
				if err := db.Create(&rows[j]).Error; err != nil {
					b.Fatal(err)
				}
			}
		}
		reportRows(b)
	})
	b.Run("gorm-create-in-batches-identity", func(b *testing.B) {
		db, _ := open(b)
		for i := 0; b.Loop(); i++ {
			rows := benchCodes(i, benchRows, setIdentity)
			if err := db.CreateInBatches(&rows, 500).Error; err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b)
	})
	b.Run("plugin-create-in-batches", func(b *testing.B) {
		db, _ := open(b)
		for i := 0; b.Loop(); i++ {
			rows := benchCodes(i, benchRows, setRow)
			if err := db.CreateInBatches(&rows, 500).Error; err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b)
	})
	b.Run("repo-copy", func(b *testing.B) {
		db, _ := open(b)
		r := newRepo[BenchRow](b, db)
		for i := 0; b.Loop(); i++ {
			if err := r.Copy(ctx, benchCodes(i, benchRows, setRow)); err != nil {
				b.Fatal(err)
			}
		}
		reportRows(b)
	})
}

// BenchmarkUpsert upserts benchRows rows per operation, half of them already in the
// table, with the two ways of reading the input: unnest arrays and the temporary table
// filled with COPY.
func BenchmarkUpsert(b *testing.B) {
	ctx := context.Background()
	for _, method := range []string{"unnest", "temp-table"} {
		for _, update := range []bool{false, true} {
			name := method + "/do-nothing"
			on := repo.OnConflict{Columns: []string{"code"}}
			if update {
				name = method + "/do-update"
				on.Update = []string{"name", "size"}
			}
			b.Run(name, func(b *testing.B) {
				db, _ := open(b)
				r := newRepo[BenchRow](b, db)
				if method == "unnest" {
					repo.UpsertViaUnnest(r)
				}
				// Iteration i writes the second half of i-1's codes again and half new ones.
				prev := benchCodes(-1, benchRows, setRow)
				if err := r.Copy(ctx, prev); err != nil {
					b.Fatal(err)
				}
				for i := 0; b.Loop(); i++ {
					rows := append(benchCodes(i, benchRows/2, setRow), prev[benchRows/2:]...)
					for j := range rows {
						rows[j].Name = fmt.Sprint("v", i)
					}
					if _, err := r.Upsert(ctx, rows, on); err != nil {
						b.Fatal(err)
					}
					prev = append(benchCodes(i, benchRows/2, setRow), rows[:benchRows/2]...)
				}
				reportRows(b)
			})
		}
	}
}
