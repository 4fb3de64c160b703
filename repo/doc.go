// Package repo makes GORM write to PostgreSQL in batches, with primary keys assigned on
// the client from blocks that package idgen reserves in PostgreSQL sequences.
//
// Tag the primary key of a model with the sequence it draws from, whose INCREMENT equals
// the allocation size, and register the Plugin:
//
//	type Commit struct {
//		ID  int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:commits_id_seq;allocationSize:50"`
//		SHA string
//	}
//
//	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{})
//	if err := db.Use(repo.NewPlugin(repo.WithValidation(&Commit{}))); err != nil { ... }
//
//	commits := []Commit{{SHA: "a1"}, {SHA: "b2"}}
//	db.CreateInBatches(&commits, 1000) // keys assigned first: one INSERT per batch, no RETURNING
//
// The plugin gives every create of a tagged model its keys before the INSERT: one
// nextval round trip reserves a block of 50 keys (or many blocks at once), so a batch of
// 1,000 rows is one allocation and one INSERT, and the caller knows every key before the
// write. Keys are allocated on the statement's own connection, so a transaction holding
// the pool's last connection does not deadlock.
//
// InTx runs a transaction on one held connection, so that everything inside it, COPY
// included, shares that connection and transaction.
package repo
