package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ui"
)

// The status shows a Kafka input's lag per partition and the newest
// checkpoint when the job has them, and neither line when it does not.
func TestWriteStatusCheckpointAndLag(t *testing.T) {
	last := time.Date(2026, 11, 30, 1, 44, 36, 950e6, time.UTC)
	j := ui.Job{ID: "wc", Name: "wc", State: "running",
		LastInputs: []ui.Input{{Stream: "kafka@main.go:85", Records: 8000, Attrs: map[string]string{"lag": "6000"},
			Partitions: []ui.PartitionInput{{Topic: "lines", Partition: 0, UntilOffset: 2000, Lag: 3000}, {Topic: "lines", Partition: 1, UntilOffset: 2000, Lag: 3000}}}},
		Checkpoint: &ui.Checkpoint{Generation: 27, LastBatchTime: &last, AgeMs: 85, MetadataBytes: 293,
			Snapshot: &ui.CheckpointSnapshot{BatchTime: last.Add(-50 * time.Millisecond), AgeMs: 120, Bytes: 65536}},
	}
	var b strings.Builder
	writeStatus(&b, j, ui.BatchPage{})
	for _, want := range []string{
		"input kafka@main.go:85: lag=6000\n  lag by partition: lines/0=3000 lines/1=3000\n",
		"checkpoint: generation 27, batch 01:44:36.950, age 85ms, metadata 293 B; snapshot of batch 01:44:36.900, age 120ms, 65536 B\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status:\n%s\nwant it to contain %q", b.String(), want)
		}
	}
	b.Reset()
	writeStatus(&b, ui.Job{ID: "wc", Name: "wc", State: "running"}, ui.BatchPage{})
	if strings.Contains(b.String(), "checkpoint") || strings.Contains(b.String(), "lag") {
		t.Errorf("status of a job without checkpoint or inputs:\n%s", b.String())
	}
}
