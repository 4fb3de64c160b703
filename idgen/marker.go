package idgen

import (
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// This file reads the marker that records, on the sequence itself, how its writers use
// it, so that writers in other processes configured differently are caught too. The
// marker is a line of the sequence's comment:
//
//	COMMENT ON SEQUENCE commits_id_seq IS 'seqrepo: pooled-lo 50';
//
// seqrepo's migration 00003 and migrations.Adoption write it; New reads it in the
// statement it already runs, and refuses a Config that disagrees (ErrMixedConfig). A
// sequence without a marker is accepted: Hibernate and other writers cannot write one.

// markerPrefix starts the line of a sequence comment that holds seqrepo's marker.
const markerPrefix = "seqrepo:"

// Marker returns the line seqrepo writes into the comment of a sequence used with c,
// for example "seqrepo: pooled-lo 50" (the optimizer's name as Optimizer.String gives
// it, then the allocation size). New refuses a Config whose Marker differs from the
// one on its sequence. Marker is a pure function, safe for concurrent use.
func (c Config) Marker() string {
	return fmt.Sprintf("%s %s %d", markerPrefix, c.Optimizer, c.AllocationSize)
}

// MarkerMismatchError is returned by New, Check and CheckOne when the sequence's
// comment carries a seqrepo marker for another optimizer or allocation size than the
// Config's: another process, or the migrations, use the sequence differently. It
// matches ErrMixedConfig with errors.Is.
type MarkerMismatchError struct {
	Sequence string // the sequence as the Config names it
	Marker   string // the marker line found on the sequence
	Refused  Config // the configuration New was given
}

func (e *MarkerMismatchError) Error() string {
	return fmt.Sprintf("idgen: sequence %s is marked %q (in its COMMENT, written by seqrepo's migrations) but this Config uses %q: all writers of a sequence must use the same optimizer and allocation size, or they get overlapping keys; use the marked configuration, or, once every writer has changed, move the sequence past every block reserved and update the marker (COMMENT ON SEQUENCE %s IS %s)",
		e.Sequence, e.Marker, e.Refused.Marker(), e.Sequence, quoteLiteral(e.Refused.Marker()))
}

// Is reports whether target is ErrMixedConfig.
func (e *MarkerMismatchError) Is(target error) bool { return target == ErrMixedConfig }

// checkMarker compares the seqrepo marker in a sequence's comment, if there is one, with
// cfg. Lines of the comment that do not start with "seqrepo:" are the user's own.
func checkMarker(cfg Config, comment sql.NullString) error {
	if !comment.Valid {
		return nil
	}
	for _, line := range strings.Split(comment.String, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, markerPrefix) {
			continue
		}
		if !sameMarker(line, cfg) {
			return &MarkerMismatchError{Sequence: cfg.Sequence, Marker: line, Refused: cfg}
		}
	}
	return nil
}

// sameMarker reports whether the marker line names cfg's optimizer and allocation size.
// Spacing and the optimizer's case do not matter; anything else after the prefix does.
func sameMarker(line string, cfg Config) bool {
	fields := strings.Fields(strings.TrimPrefix(line, markerPrefix))
	if len(fields) != 2 {
		return false
	}
	size, err := strconv.Atoi(fields[1])
	return err == nil && strings.EqualFold(fields[0], cfg.Optimizer.String()) && size == cfg.AllocationSize
}

// quoteLiteral quotes s as an SQL string literal, for messages.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
