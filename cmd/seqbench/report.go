package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// result is one strategy's outcome.
type result struct {
	Strategy  string    `json:"strategy"`
	Rows      int       `json:"rows"`
	Runs      []float64 `json:"run_seconds"`
	Median    float64   `json:"median_seconds"`
	RowsPerS  float64   `json:"rows_per_second"`
	SpeedUp   float64   `json:"speedup_over_rowbyrow,omitempty"`
	VsRawCopy float64   `json:"ratio_to_raw_copy,omitempty"`
	Counts    counts    `json:"per_run"`
	// The graph strategies': requests per run, each request's time (over every run)
	// and the network round trips per request.
	Requests             int     `json:"requests,omitempty"`
	P50ms                float64 `json:"p50_ms,omitempty"`
	P99ms                float64 `json:"p99_ms,omitempty"`
	RoundTripsPerRequest float64 `json:"round_trips_per_request,omitempty"`
	Verified             bool    `json:"verified"`
	Error                string  `json:"error,omitempty"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// finish fills in the ratios, which need every strategy's median.
func finish(results []*result) {
	var base, raw float64
	for _, r := range results {
		switch r.Strategy {
		case "rowbyrow":
			base = r.Median
		case "raw-copy":
			raw = r.RowsPerS
		}
	}
	for _, r := range results {
		if r.Median > 0 {
			r.RowsPerS = float64(r.Rows) / r.Median
			if base > 0 {
				r.SpeedUp = base / r.Median
			}
		}
	}
	for _, r := range results {
		if r.Strategy == "raw-copy" {
			raw = r.RowsPerS
		}
	}
	for _, r := range results {
		if raw > 0 && r.RowsPerS > 0 {
			r.VsRawCopy = r.RowsPerS / raw
		}
	}
}

func printTable(w io.Writer, results []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\trows\tmedian s\trows/s\tvs rowbyrow\tvs raw-copy\tnextval RTs\tstatements\tround trips\tp50 ms\tp99 ms\tRTs/request\tverified\t")
	for _, r := range results {
		ratio := func(x float64) string {
			if x == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", x)
		}
		ok := "yes"
		if !r.Verified {
			ok = "NO"
		}
		p50, p99, rts := "-", "-", "-"
		if r.Requests > 0 {
			p50, p99, rts = fmt.Sprintf("%.2f", r.P50ms), fmt.Sprintf("%.2f", r.P99ms), fmt.Sprintf("%.2f", r.RoundTripsPerRequest)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.0f\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			r.Strategy, r.Rows, r.Median, r.RowsPerS, ratio(r.SpeedUp), ratio(r.VsRawCopy), r.Counts.Nextval, r.Counts.Statements,
			r.Counts.RoundTrips, p50, p99, rts, ok)
	}
	tw.Flush()
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Strategy, r.Error)
		}
	}
}

func printJSON(w io.Writer, meta any, results []*result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"meta": meta, "results": results})
}

// progress: a line on stderr, redrawn in place when stderr is a terminal, else
// printed every progressEvery, so that a long run is never silent.
var (
	progressRows  atomic.Int64
	progressTotal atomic.Int64
	progressLabel atomic.Value // string
	progressUnit  atomic.Value // string
)

const progressEvery = 10 * time.Second

func progressAdd(n int) { progressRows.Add(int64(n)) }

func stderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startProgress reports progress on w until the returned stop is called.
func startProgress(w io.Writer) (stop func()) {
	terminal := stderrIsTerminal()
	if lw, ok := w.(*lockedWriter); !ok || lw.w != os.Stderr {
		terminal = false
	}
	every := progressEvery
	if terminal {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if terminal {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
				label, _ := progressLabel.Load().(string)
				unit, _ := progressUnit.Load().(string)
				if terminal {
					fmt.Fprintf(w, "\r\033[K%s %d/%d %s", label, progressRows.Load(), progressTotal.Load(), unit)
				} else {
					fmt.Fprintf(w, "%s: %d/%d %s\n", label, progressRows.Load(), progressTotal.Load(), unit)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func setProgress(label string, total int, unit string) {
	progressLabel.Store(label)
	progressUnit.Store(unit)
	progressRows.Store(0)
	progressTotal.Store(int64(total))
}

// lockedWriter serialises writes to w: the progress lines and the log share stderr.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
