package repo_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"
)

// A pool-level create makes the shared allocator (its check waits for a connection)
// while a transaction holding the pool's only connection creates a row of the same
// model: the transaction must not wait for the pool caller, which waits for it.
func TestPluginFirstUseWithHeldConnection(t *testing.T) {
	for _, order := range []string{"pool first", "transaction first"} {
		t.Run(order, func(t *testing.T) {
			// The timeout only turns a deadlock into a failure; nothing is timed.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db, sqlDB, p := fixOpen(t, gorm.Config{}, 1, gadgetSchema)
			tx := db.WithContext(ctx).Begin() // holds the only connection
			if tx.Error != nil {
				t.Fatal(tx.Error)
			}
			defer tx.Rollback()
			pool := Gadget{Code: "pool", Label: "x"}
			inTx := Gadget{Code: "tx", Label: "x"}
			poolDone := make(chan error, 1)
			startPool := func() {
				go func() { poolDone <- db.WithContext(ctx).Create(&pool).Error }()
			}
			if order == "pool first" {
				startPool()
				// The pool create is inside the allocator's check once it waits for a
				// connection: keys are assigned before anything else of the create runs.
				for sqlDB.Stats().WaitCount == 0 {
					runtime.Gosched()
				}
			}
			if err := tx.Create(&inTx).Error; err != nil {
				t.Fatalf("create in the transaction: %v", err)
			}
			if order == "transaction first" {
				startPool()
			}
			if err := tx.Commit().Error; err != nil {
				t.Fatal(err)
			}
			if err := <-poolDone; err != nil {
				t.Fatalf("create on the pool: %v", err)
			}
			if pool.ID == 0 || inTx.ID == 0 || pool.ID == inTx.ID {
				t.Errorf("keys %d and %d", pool.ID, inTx.ID)
			}
			// One allocator for the sequence: both keys came from it.
			a, err := p.Allocator(ctx, &Gadget{})
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Stats().Keys; got != 2 {
				t.Errorf("the shared allocator handed out %d keys, want 2", got)
			}
			if got := gadgetCodes(t, db); !slices.Equal(got, []string{"pool", "tx"}) {
				t.Errorf("rows %q", got)
			}
		})
	}
}
