package repo

// UpsertViaTempTable makes r's Upsert use the temporary-table pivot instead of unnest,
// for the tests and benchmarks that compare the two.
func UpsertViaTempTable[T any](r *Repository[T]) { r.upsertVia = viaTempTable }
