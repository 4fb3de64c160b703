package models

import "time"

// Repository is a git repository being indexed (table repositories). Name is unique.
type Repository struct {
	ID        int64     `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:repositories_id_seq;allocationSize:50"`
	Name      string    `gorm:"not null;uniqueIndex:repositories_name_key"`
	URL       string    `gorm:"not null"`
	CreatedAt time.Time `gorm:"not null"`

	// Commits are the repository's commits (has-many through Commit.RepositoryID).
	Commits []Commit
}

// Author is a commit author (table authors), identified by a unique e-mail address.
type Author struct {
	ID    int64  `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:authors_id_seq;allocationSize:50"`
	Email string `gorm:"not null;uniqueIndex:authors_email_key"`
	Name  string `gorm:"not null"`
}

// Commit is one commit of a repository (table commits). SHA is the full object name, 40
// hexadecimal characters (64 in a SHA-256 repository), unique within the repository.
type Commit struct {
	ID           int64     `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:commits_id_seq;allocationSize:50"`
	RepositoryID int64     `gorm:"not null;uniqueIndex:commits_repository_id_sha_key,priority:1"`
	AuthorID     int64     `gorm:"not null;index:commits_author_id_idx"`
	SHA          string    `gorm:"column:sha;type:text;not null;uniqueIndex:commits_repository_id_sha_key,priority:2"`
	Message      string    `gorm:"not null"`
	AuthoredAt   time.Time `gorm:"not null"`
	CommittedAt  time.Time `gorm:"not null"`

	// Repository and Author are the belongs-to associations of RepositoryID and AuthorID.
	Repository *Repository
	Author     *Author
}

// Tenant is a customer of a multi-tenant service (table tenants), with a unique slug and
// free-form JSON metadata.
type Tenant struct {
	ID       int64    `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:tenants_id_seq;allocationSize:50"`
	Slug     string   `gorm:"not null;uniqueIndex:tenants_slug_key"`
	Name     string   `gorm:"not null"`
	Metadata Metadata `gorm:"type:jsonb;not null"`
}

// All returns a new pointer to the zero value of every model, parents before children (the
// order in which rows can be created), for validation, migrations and their tests.
// Each call returns new values.
func All() []any {
	return []any{&Repository{}, &Author{}, &Commit{}, &Tenant{}}
}
