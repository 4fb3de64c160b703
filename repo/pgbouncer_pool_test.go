package repo_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/repo"
)

// TestPgBouncerOneServerConnection: behind PgBouncer with one server connection per
// database, a transaction holds that connection, and a write inside it must take its
// keys on the transaction itself: an allocation on any other client connection would
// wait for the server connection the transaction holds, until PgBouncer's
// query_wait_timeout gives up. Every write path is tried inside repo.InTx and inside a
// plain db.Transaction, from several goroutines at once, and the server shows that
// PgBouncer never used more than its one connection.
func TestPgBouncerOneServerConnection(t *testing.T) {
	pgtest.RequirePgBouncer(t)
	ctx := t.Context()
	admin, _ := pgtest.Server(t)
	b, err := pgtest.StartPgBouncer(ctx, admin, pgtest.PgBouncerOptions{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	cfg, err := pgconn.ParseConfig(pgtest.NewDatabase(t, schemaTemplate, pgtest.Direct()))
	if err != nil {
		t.Fatal(err)
	}
	db, _ := openDSN(t, b.DSN(cfg.Database), config{})
	ws := newRepo[Widget](t, db)

	writes := func(tx *gorm.DB, prefix string) error {
		r := ws.WithTx(tx)
		if err := r.CreateAll(ctx, widgets(prefix+"-all", 120)); err != nil {
			return fmt.Errorf("CreateAll: %w", err)
		}
		if err := r.Copy(ctx, widgets(prefix+"-copy", 120)); err != nil {
			return fmt.Errorf("Copy: %w", err)
		}
		if _, err := r.Upsert(ctx, widgets(prefix+"-up", 60), repo.OnConflict{Columns: []string{"code"}}); err != nil {
			return fmt.Errorf("Upsert: %w", err)
		}
		if err := tx.Create(&Widget{Code: prefix + "-one", Name: "one"}).Error; err != nil {
			return fmt.Errorf("Create: %w", err)
		}
		return nil
	}
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- repo.InTx(ctx, db, func(tx *gorm.DB) error { return writes(tx, fmt.Sprintf("intx%d", w)) })
		}()
		go func() {
			defer wg.Done()
			errs <- db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return writes(tx, fmt.Sprintf("tx%d", w)) })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n, want := count(t, db, "widgets"), int64(2*workers*(120+120+60+1)); n != want {
		t.Errorf("%d widgets, want %d", n, want)
	}
	adb, _ := openDSN(t, pgtest.NewDatabase(t, pgtest.Direct()), config{})
	var backends int64
	if err := adb.Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = ?`, cfg.Database).Scan(&backends).Error; err != nil {
		t.Fatal(err)
	}
	if backends != 1 {
		t.Errorf("%d server connections to %s, want PgBouncer's one", backends, cfg.Database)
	}
	if err := b.Stop(); err != nil { // after Stop, Logins is final
		t.Fatal(err)
	}
	if b.Logins(cfg.Database) == 0 {
		t.Error("PgBouncer logged no client login: the test did not go through it")
	}
}
