package repo

// UpsertViaTempTable makes r's Upsert use the temporary-table pivot wherever COPY can
// be reached, in pgx's simple protocol too, for the tests and benchmarks that compare
// the two ways.
func UpsertViaTempTable[T any](r *Repository[T]) { r.upsertVia = viaTempTable }

// UpsertViaUnnest makes r's Upsert read its input with unnest, as it does in a
// db.Transaction, for the tests and benchmarks that compare the two ways.
func UpsertViaUnnest[T any](r *Repository[T]) { r.upsertVia = viaUnnest }
