package main

import (
	"fmt"
	"strings"
)

// allStrategies lists the strategies in the order they run and print.
func allStrategies() []strategy {
	return []strategy{
		{name: "rowbyrow", about: "GORM Create, one row at a time, default settings (the baseline)", run: rowByRow},
		{name: "identity-batch", about: "GORM CreateInBatches with database-assigned IDENTITY keys", run: batched(false)},
		{name: "prealloc-batch", about: "seqrepo plugin + GORM CreateInBatches, keys from sequence blocks", run: batched(true)},
		{name: "copy", about: "seqrepo Repository.Copy (COPY with keys assigned first)", run: seqCopy},
		{name: "upsert", about: "seqrepo Repository.Upsert, a third of the input already present", prepare: preloadThird, run: seqUpsert},
		{name: "raw-copy", about: "pgx CopyFrom written by hand, no seqrepo (the speed limit)", run: rawCopy},
		{name: "pivot-reference", about: "COPY to a temp table + INSERT … SELECT … ON CONFLICT DO NOTHING by hand", prepare: preloadThird, run: pivotReference},
		{name: "graph-gorm", about: "per request: GORM Create of 1 repository + 10 authors + 10 commits, IDENTITY keys", run: graphGORM},
		{name: "graph-plugin", about: "per request: the same with the seqrepo plugin, keys from sequence blocks", run: graphPlugin},
		{name: "graph", about: "per request: the same with seqrepo Repository.CreateGraph, one pipeline round trip", run: graphPipeline},
	}
}

func strategyNames() []string {
	var names []string
	for _, s := range allStrategies() {
		names = append(names, s.name)
	}
	return names
}

// pickStrategies resolves a comma-separated list, in the order given.
func pickStrategies(list string) ([]strategy, error) {
	byName := map[string]strategy{}
	for _, s := range allStrategies() {
		byName[s.name] = s
	}
	var out []strategy
	seen := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" || seen[name] {
			continue
		}
		s, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("unknown strategy %q (have %s)", name, strings.Join(strategyNames(), ", "))
		}
		seen[name] = true
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no strategy chosen")
	}
	return out, nil
}
