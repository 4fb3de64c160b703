// Package idgen reserves blocks of primary keys from PostgreSQL sequences so that
// writes can be batched: keys are known before the INSERT, so many rows can go in one
// statement or one COPY, with no RETURNING and no round trip per row.
//
// It is what Hibernate does with @SequenceGenerator(allocationSize = 50) on a
// sequence with INCREMENT 50. Each nextval reserves a whole block of AllocationSize
// keys, so the sequence's INCREMENT must equal AllocationSize; New and every refill
// check that, in the same round trip as the nextval, and a mismatch is
// ErrIncrementMismatch, never a silent overlap.
//
// # Usage
//
// Create the sequence with the matching INCREMENT, then one Allocator per sequence,
// shared by the whole process:
//
//	-- CREATE SEQUENCE commits_id_seq INCREMENT BY 50;
//	alloc, err := idgen.New(ctx, db, idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50})
//	if err != nil { ... }
//	id, err := alloc.Next(ctx)          // from memory, except once per 50 keys
//	ids, err := alloc.NextN(ctx, 10000) // 200 blocks, one round trip
//
// db is any database handle, passed as it is (see DB): a *sql.DB, *sql.Tx, *sql.Conn
// or GORM's ConnPool (a Querier), or a *pgxpool.Pool, *pgx.Conn, pgx.Tx or sqlc's DBTX
// for pgx/v5 (a PgxQuerier). Inside a transaction that holds a connection the pool may
// need, use the transaction for refills, so a one-connection pool cannot deadlock:
//
//	tx, _ := db.BeginTx(ctx, nil) // or pool.Begin(ctx), for pgx
//	ids, err := alloc.WithTx(tx).NextN(ctx, len(rows))
//
// # Optimizers
//
// PooledLo (the default) reads a nextval value v as the block v … v+size-1; Pooled
// reads it as v-size+1 … v, Hibernate 6's default, so that a Go service and a JVM
// service can share one sequence. All writers of a sequence must use the same
// optimizer and allocation size. Writers that insert with DEFAULT nextval(...) stay
// safe beside either: every nextval value belongs to exactly one writer.
//
// # Guarantees
//
// No key is handed out twice, across goroutines, processes and hosts, under the rules
// above. nextval is not transactional: keys of a rolled-back insert, and keys reserved
// but never used, leave gaps. Gaps are normal; duplicates never are.
//
// Sequence names come from configuration and are sent as bind parameters resolved by
// PostgreSQL's regclass input; nothing is spliced into SQL. New pins the Allocator to
// the sequence the name resolves to then (SequenceOID); a refill on a connection where
// the name means another sequence that still exists (a different search_path) fails
// with ErrSequenceChanged and takes no value. When the pinned sequence was dropped and
// created again, the refill re-pins to the new one and moves it past every key it
// reserved from the old one. When sequences of an unqualified name exist in several
// schemas, an Allocator from WithTx checks the name on its Querier before its first key;
// code that switches search_path per transaction (schema per tenant) should still name
// sequences schema-qualified.
//
// Each refill writes a transactional WAL record so that its commit waits for
// synchronous standbys (Config.NoDurableRefill turns it off), and reads the server's WAL
// timeline: after a failover, blocks reserved on the earlier timeline are dropped. A
// refill takes only the blocks that fit below MAXVALUE and keeps them when the call
// fails with ErrExhausted. New refuses a Config other than the one recorded in the
// sequence's comment (Config.Marker) with ErrMixedConfig.
//
// Callers that run short of keys at the same moment share one round trip, and by
// default a background refill reserves the next blocks before the pool runs dry
// (Config.NoPrefetch), never on a caller's transaction. Stats tells the round trips
// callers waited for from the background ones.
package idgen
