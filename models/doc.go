// Package models is seqrepo's example domain: the workload of a service that indexes git
// history, where batching writes matters most, and a tenant entity with a JSON metadata
// column.
//
// A Repository has many Commits; a Commit belongs to its Repository and to an Author, and
// many commits share one author (so authors are written with ON CONFLICT on their e-mail).
// A Commit is unique per (repository, SHA).
//
// Every primary key is a bigint that the client assigns before the INSERT, from blocks
// reserved in the table's sequence. The key field says so in an idgen struct tag, read by
// idgen.ParseTag, seqrepo's GORM plugin and migrations.Validate:
//
//	ID int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:commits_id_seq;allocationSize:50"`
//
// The sequence's INCREMENT must equal allocationSize; package migrations creates the tables
// and sets it. autoIncrement:false keeps GORM from treating the key as database-assigned
// (without it GORM appends RETURNING "id" to every INSERT and leaves the key to the
// database).
//
// The structs carry only struct tags: this package imports no ORM, no driver and nothing of
// seqrepo. Table names are GORM's defaults: repositories, authors, commits, tenants.
//
// Model values are plain data: like any Go struct they are not safe for concurrent
// mutation, and nothing in this package is shared between goroutines.
package models
