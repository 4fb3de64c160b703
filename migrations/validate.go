package migrations

import (
	"context"
	"fmt"
	"reflect"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/keycheck"
)

// ErrNoTag is matched (with errors.Is) by the problem Validate reports for a model that
// seqrepo cannot key: no field has an idgen struct tag, more than one has, or the tagged
// field is not the model's only primary key or not an integer. It is idgen.ErrNoKeyTag,
// the sentinel repo's Plugin.Validate reports for the same models.
var ErrNoTag = idgen.ErrNoKeyTag

// Validate checks, like Hibernate's schema validation at startup, that every model's key
// is ready for seqrepo. It runs the same validator as repo's Plugin.Validate, so the two
// give the same verdict on the same models: for each model (a struct or a pointer to one,
// such as the values models.All returns), the idgen tag parses and is on the model's only
// primary key, an integer field (int, int8 … int64, uint … uint64, or a type defined on
// one); the sequence (the tag's, or with no sequence in the tag the key column's own:
// serial or identity) exists, is NO CYCLE, has INCREMENT equal to the allocation size and
// can reserve another block; and the block its next nextval reserves lies above the
// table's largest key, so that keys inserted explicitly cannot collide.
//
// Validate knows no ORM: it names tables and columns the way GORM's default
// NamingStrategy does (a TableName() string method, gorm:"column:…", embedded structs
// and embeddedPrefix are honoured). For models that a *gorm.DB with another
// NamingStrategy maps, use repo's Plugin.Validate, which reads GORM's schema.
//
// Validate reports every problem at once: it returns nil, or an *idgen.CheckError with one
// *idgen.KeyError per offending model, naming the model, its table, column and sequence,
// and for a mismatch or a sequence behind the table's keys the migrations.NewAdoption call
// that fixes it. errors.Is matches each problem's sentinel (idgen.ErrIncrementMismatch,
// idgen.ErrSequenceNotFound, idgen.ErrSequenceBehind, idgen.ErrNoColumnSequence,
// idgen.ErrCycle, idgen.ErrExhausted, idgen.ErrInvalidConfig for a malformed tag, ErrNoTag),
// and errors.As finds the idgen error types. If ctx ends, Validate returns ctx.Err() alone;
// if the database cannot be queried at all (it is down, or db is closed), Validate returns
// that one error, wrapping the driver's, instead of one problem per model.
//
// Validate only reads. It is safe for concurrent use if db is.
func Validate(ctx context.Context, db idgen.Querier, models ...any) error {
	var problems []error
	for _, m := range models {
		if err := keycheck.Check(ctx, db, keycheck.FromType(reflect.TypeOf(m))); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if len(problems) == 0 {
				if down := keycheck.Unreachable(ctx, db); down != nil {
					return fmt.Errorf("migrations: Validate: cannot query the database: %w", down)
				}
			}
			problems = append(problems, err)
		}
	}
	return keycheck.Errors(problems)
}
