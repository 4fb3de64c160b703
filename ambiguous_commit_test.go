package seqrepo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
)

// cancelKey carries, in a call's context, the function that cancels it.
type cancelKey struct{}

// cancelAtCommit is a pgx tracer that cancels a call's context while its COMMIT is on
// its way: from another goroutine, so that the cancellation lands before, during or
// after the server commits, as a broken connection would.
type cancelAtCommit struct{}

func (cancelAtCommit) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.EqualFold(strings.TrimSpace(data.SQL), "commit") {
		if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
			go cancel()
		}
	}
	return ctx
}

func (cancelAtCommit) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestAmbiguousCommitRetry holds the retry rule of the README: a create whose context
// is cancelled while COMMIT is in flight may fail although it committed. The structs
// keep the keys the plugin gave them, so retrying with the same structs either writes
// them (the first attempt wrote nothing) or fails with a duplicate key on the primary
// key (it committed), and never writes a row twice.
func TestAmbiguousCommitRetry(t *testing.T) {
	dsn := pgtest.NewDatabase(t, migrated)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = cancelAtCommit{}
	sqlDB := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Use(repo.NewPluginWithConfig(repo.PluginConfig{Validate: models.All()})); err != nil {
		t.Fatal(err)
	}

	const calls = 300
	var failed, committed int
	for i := range calls {
		rows := []models.Author{
			{Email: fmt.Sprintf("a%d@commit.example", i), Name: "a"},
			{Email: fmt.Sprintf("b%d@commit.example", i), Name: "b"},
		}
		ctx, cancel := context.WithCancel(t.Context())
		err := db.WithContext(context.WithValue(ctx, cancelKey{}, context.CancelFunc(cancel))).Create(&rows).Error
		cancel()
		if err == nil {
			continue
		}
		failed++
		// Retry at once with the same structs: the retry's INSERT waits for a COMMIT
		// still under way on the server, so it sees whether the first attempt wrote.
		retry := db.WithContext(t.Context()).Create(&rows).Error
		var dup *pgconn.PgError
		switch {
		case retry == nil:
		case errors.As(retry, &dup) && dup.Code == "23505" && dup.ConstraintName == "authors_pkey":
			committed++
		default:
			t.Fatalf("call %d failed (%v); its retry with the same structs = %v, want success or a duplicate on authors_pkey", i, err, retry)
		}
		// Either way the rows are in the table once, under the keys the structs hold.
		var got []models.Author
		if err := db.Where("email IN ?", []string{rows[0].Email, rows[1].Email}).Order("id").Find(&got).Error; err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != min(rows[0].ID, rows[1].ID) || got[1].ID != max(rows[0].ID, rows[1].ID) {
			t.Fatalf("call %d: after the retry the table holds %+v for rows keyed %d and %d", i, got, rows[0].ID, rows[1].ID)
		}
	}
	t.Logf("%d of %d calls failed at COMMIT; %d of those had committed", failed, calls, committed)
}
