package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/migrations"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// AutoMigrateLockID is the key of the transaction-level advisory lock
// (pg_advisory_xact_lock) that AutoMigrate holds while it migrates, so that instances
// starting at once take turns. It spells "seqrepo1" in ASCII.
const AutoMigrateLockID int64 = 0x7365717265706f31

// AutoMigrate runs GORM's db.AutoMigrate(models...) and then leaves the key sequence of
// every keyed model among models ready for seqrepo: INCREMENT equal to the allocation
// size, and the next block above max(key) and above every value the sequence handed out
// before. A model is keyed when its primary key has an idgen tag, or when the Plugin
// registered on db keys it by PluginConfig.AutoKeys (without a Plugin, only tagged models are).
// GORM's AutoMigrate makes bigserial keys whose sequences have INCREMENT 1; after
// AutoMigrate they validate (Plugin.Validate, migrations.Validate).
//
// A sequence that is already sound is not touched. One that is not is adopted with the
// statement migrations.NewAdoption generates (the one a goose migration would run): it
// locks the table against writes, sets the INCREMENT, and moves the sequence forward when
// its next block could hold a key in use, never backwards. So AutoMigrate is idempotent
// and safe to call at every start, and from many instances at once: everything, GORM's
// AutoMigrate included, runs in one transaction that first takes the advisory lock
// AutoMigrateLockID, so one instance migrates while the others wait, then find nothing
// left to do. It fails, and changes nothing, when a keyed model's sequence cannot be used
// (a tag without a sequence on a column that has none, a CYCLE sequence, a GENERATED
// ALWAYS identity column, …); the error names the model.
//
// ctx bounds the whole call. AutoMigrate is safe for concurrent use.
func AutoMigrate(ctx context.Context, db *gorm.DB, models ...any) error {
	p, _ := db.Config.Plugins[pluginName].(*Plugin)
	var migrated []*schema.Schema
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", AutoMigrateLockID).Error; err != nil {
			return fmt.Errorf("repo: AutoMigrate: wait for advisory lock %d: %w", AutoMigrateLockID, err)
		}
		if err := tx.AutoMigrate(models...); err != nil {
			return fmt.Errorf("repo: AutoMigrate: %w", err)
		}
		sqlTx, ok := unwrapPool(tx.Statement.ConnPool).(*sql.Tx)
		if !ok {
			return fmt.Errorf("repo: AutoMigrate: GORM's transaction is a %T, not a *sql.Tx", tx.Statement.ConnPool)
		}
		for _, v := range models {
			s, err := parseSchema(db, v)
			if err != nil {
				return fmt.Errorf("repo: AutoMigrate: %w", err)
			}
			if err := adoptKey(ctx, sqlTx, p, s); err != nil {
				return err
			}
			migrated = append(migrated, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p != nil {
		// The columns may have sequences now that they had not when the plugin looked.
		for _, s := range migrated {
			p.forget(s)
		}
	}
	return nil
}

// adoptKey leaves the key sequence of s (if s is keyed) sound, adopting it in tx when
// idgen.CheckKey finds its INCREMENT or its position wrong.
func adoptKey(ctx context.Context, tx *sql.Tx, p *Plugin, s *schema.Schema) error {
	var (
		m    *model
		auto bool
		err  error
	)
	if p != nil {
		e := p.entry(s)
		m, auto, err = e.m, e.auto, e.err
	} else {
		m, err = parseModel(s)
		if m != nil || err != nil {
			if k := keyOf(s); k.Err != nil {
				m, err = nil, fmt.Errorf("repo: model %s: %w", modelName(s), k.Err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("repo: AutoMigrate: %w", err)
	}
	if m == nil {
		return nil
	}
	column := m.key.DBName
	cfg, err := idgen.CheckKey(ctx, tx, idgen.Key{Table: s.Table, Column: column, Config: m.cfg})
	switch {
	case err == nil:
		return nil
	case auto && errors.Is(err, idgen.ErrNoColumnSequence):
		return nil // PluginConfig.AutoKeys leaves it to GORM
	case !errors.Is(err, idgen.ErrIncrementMismatch) && !errors.Is(err, idgen.ErrSequenceBehind):
		return fmt.Errorf("repo: AutoMigrate: model %s (table %s, key %s): %w", m.name(), s.Table, column, err)
	}
	ac := migrations.AdoptConfig{Table: s.Table, Column: column, AllocationSize: cfg.AllocationSize, Optimizer: cfg.Optimizer}
	if sch, name, ok := strings.Cut(s.Table, "."); ok {
		ac.Schema, ac.Table = sch, name
	}
	if m.cfg.Sequence != "" {
		// The tag names the sequence: adopt that one, by its exact names.
		var seqSchema, seqName string
		if err := tx.QueryRowContext(ctx, `SELECT n.nspname, c.relname FROM pg_class AS c
			JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = $1::text::regclass`, cfg.Sequence).Scan(&seqSchema, &seqName); err != nil {
			return fmt.Errorf("repo: AutoMigrate: model %s: find sequence %s: %w", m.name(), cfg.Sequence, err)
		}
		ac.SequenceSchema, ac.Sequence = seqSchema, seqName
	}
	a, err := migrations.NewAdoption(ac)
	if err != nil {
		return fmt.Errorf("repo: AutoMigrate: model %s: %w", m.name(), err)
	}
	if err := a.Up(ctx, tx); err != nil {
		return fmt.Errorf("repo: AutoMigrate: model %s: %w", m.name(), err)
	}
	return nil
}
