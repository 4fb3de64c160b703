//go:build seqrepo_keyed

// This file is seqrepo's, copied into GORM's utils/tests/ by scripts/gormsuite/run.sh, which makes the models
// of models.go that embedded gorm.Model embed Model instead. With the seqrepo_keyed build tag (mode keyed),
// Model is gorm.Model with a key seqrepo assigns: one base struct keys every model that embeds it, each from
// its own key column's sequence, in blocks of 50.

package tests

import (
	"time"

	"gorm.io/gorm"
)

// Model is gorm.Model whose ID seqrepo assigns from the key column's own sequence (INCREMENT 50).
type Model struct {
	ID        uint `gorm:"primarykey" idgen:"allocationSize:50"`
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}
