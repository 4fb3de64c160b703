package repo_test

import (
	"context"
	"testing"

	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/repo"
)

// Ledger's key uses Hibernate's pooled optimizer.
type Ledger struct {
	ID   int64 `gorm:"primaryKey" idgen:"allocationSize:50;optimizer:pooled"`
	Name string
}

// AutoMigrate writes the configuration marker of the model's own optimizer, so a pooled
// model can write after it (the marker is what idgen.New checks against its Config).
func TestAutoMigratePooledOptimizer(t *testing.T) {
	ctx := context.Background()
	db, _, sqlDB := openWith(t, pgtest.NewDatabase(t), repo.PluginConfig{})
	if err := repo.AutoMigrate(ctx, db, &Ledger{}); err != nil {
		t.Fatal(err)
	}
	l := Ledger{Name: "one"}
	if err := db.Create(&l).Error; err != nil {
		t.Fatalf("create after AutoMigrate: %v", err)
	}
	if got := queryOne[string](t, sqlDB, `SELECT name FROM ledgers WHERE id = $1`, l.ID); got != "one" {
		t.Fatalf("key %d names row %q", l.ID, got)
	}
	if c := queryOne[string](t, sqlDB, `SELECT obj_description('ledgers_id_seq'::regclass, 'pg_class')`); c != "seqrepo: pooled 50" {
		t.Errorf("marker %q, want %q", c, "seqrepo: pooled 50")
	}
}
