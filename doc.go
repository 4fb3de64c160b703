// Package seqrepo makes GORM write to PostgreSQL in batches by assigning primary keys on
// the client, from blocks reserved in PostgreSQL sequences — what Hibernate does with
// @SequenceGenerator(allocationSize = 50) and ALTER SEQUENCE … INCREMENT 50, brought to
// Go, and carried further: COPY, conflict-aware bulk upserts, and an allocator that is
// safe across goroutines, processes and hosts.
//
// This root package holds no code, only the end-to-end tests of the whole stack. The
// work is done by its sub-packages, which depend on each other in one direction:
//
//   - idgen: the sequence block allocator. It reserves blocks with nextval, hands out
//     keys from memory, and checks that the sequence INCREMENT equals the allocation
//     size. It knows no ORM: pgx, sqlc and database/sql users can use it alone.
//   - repo: the GORM plugin that assigns keys before create (so CreateInBatches needs
//     no RETURNING), generic repositories with batched CreateAll, COPY and Upsert on a
//     unique key, InTx, and typed errors. It builds on idgen.
//   - models: the example domain, git repositories, authors and commits (the ingest
//     workload) and tenants, as GORM structs with idgen key tags.
//   - migrations: goose migrations for the models, including the INCREMENT changes,
//     Up to apply them and Validate to check the sequences at startup.
//   - cmd/seqbench: ingests a commit history under each write strategy and prints what
//     each cost.
//   - internal/pgtest: an ephemeral PostgreSQL for the tests and for seqbench.
package seqrepo
