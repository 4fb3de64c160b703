// Package repo makes GORM write to PostgreSQL in batches, with primary keys assigned on
// the client from blocks that package idgen reserves in PostgreSQL sequences — what
// Hibernate does with @SequenceGenerator(allocationSize = 50), for GORM, plus COPY and
// conflict-aware bulk upserts.
//
// # The plugin
//
// Give a model's primary key an idgen tag naming its sequence, whose INCREMENT equals
// the allocation size, and register the Plugin once per *gorm.DB:
//
//	type Commit struct {
//		ID  int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:commits_id_seq;allocationSize:50"`
//		SHA string
//	}
//
//	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{})
//	if err := db.Use(repo.NewPluginWithConfig(repo.PluginConfig{Validate: []any{&Commit{}}})); err != nil {
//		return err // a missing sequence, or INCREMENT ≠ allocationSize, fails here
//	}
//
// repo.NewPlugin() is the same without checks at startup. PluginConfig also sets an
// allocation size for every model (AllocationSize) and keys untagged models with a
// sequence of their own (AutoKeys). The problems Validate finds come back as one
// *idgen.CheckError, the type idgen.Check and migrations.Validate return too.
//
// From then on every create of a tagged model gets its keys before the INSERT: one
// nextval reserves a block of 50 keys, and a statement's rows take all their keys in at
// most one round trip. So db.CreateInBatches(&commits, 1000) is one allocation and one
// INSERT per batch, without RETURNING, and a parent and its has-many children or
// belongs-to parents are inserted with their keys and foreign keys already set. Keys a
// caller set are kept. (autoIncrement:false is optional: the plugin handles GORM's
// RETURNING of integer keys either way, without touching GORM's cached schema.)
//
// Keys are allocated on the statement's own connection: from the allocator shared by
// the *gorm.DB on the pool, and through Allocator.WithTx inside a transaction, so that a
// transaction holding the pool's last connection never waits for another.
//
// # Repositories
//
// A Repository[T] offers domain-level methods over one tagged model; for anything else,
// DB returns the *gorm.DB:
//
//	commits, err := repo.New[Commit](db) // or repo.NewWithConfig[Commit](db, repo.Config{BatchSize: 1000})
//	err = commits.CreateAll(ctx, rows)  // batched INSERTs, ≤ 65,535 parameters each, all or nothing
//	err = commits.Copy(ctx, rows)       // keys first, then one COPY
//	n, err := commits.CopySeq(ctx, seq, nil) // millions of rows in bounded memory
//	res, err := authors.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"email"}, Update: []string{"name"}})
//	c, err := commits.Get(ctx, key)     // errors.Is(err, repo.ErrNotFound)
//
// Get, GetMany, Update, Save, Delete, List (keyset pagination) and Count complete it.
// After a write every row in the caller's slice holds its key; Upsert writes the
// existing key into rows that conflicted, and reports which rows were inserted. A failed
// CreateAll, Copy, CopySeq or Upsert writes nothing. A unique violation is a
// *DuplicateKeyError; idgen's errors (idgen.ErrIncrementMismatch, …) come back unchanged.
// A string field PostgreSQL cannot store (a NUL byte, invalid UTF-8) is an
// *InvalidTextError naming the row and field (errors.Is(err, repo.ErrInvalidText)),
// found before anything is sent.
//
// # Transactions
//
// InTx runs a function in a transaction on one connection it holds; WithTx binds a
// Repository to it:
//
//	err := repo.InTx(ctx, db, func(tx *gorm.DB) error {
//		if err := repos.WithTx(tx).Create(ctx, &project); err != nil {
//			return err
//		}
//		return commits.WithTx(tx).Copy(ctx, rows) // COPY inside the same transaction
//	})
//
// COPY needs the driver connection, which database/sql's *sql.Tx hides; InTx keeps it
// within reach. In a plain db.Transaction, Copy and CopySeq write the same rows with
// INSERT … SELECT FROM unnest(…) instead, still inside the caller's transaction.
//
// The Plugin, Repositories and InTx are safe for concurrent use; a transaction and a
// Repository bound to it are for one goroutine at a time.
package repo
