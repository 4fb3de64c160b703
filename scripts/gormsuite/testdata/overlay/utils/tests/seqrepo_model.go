//go:build !seqrepo_keyed

// This file is seqrepo's, copied into GORM's utils/tests/ by scripts/gormsuite/run.sh, which makes the models
// of models.go that embedded gorm.Model embed Model instead. Without the seqrepo_keyed build tag (modes plain
// and plugin) Model is gorm.Model itself, an alias: the models are GORM's, field for field.

package tests

import "gorm.io/gorm"

// Model is gorm.Model.
type Model = gorm.Model
