package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// A job that ends while its own submission is still returning (a script
// that exits at once), alone or with concurrent submissions of the same
// binary: once every job of a binary is over, the binary is deleted.
// Found by review (2026-11-30): half the binaries stayed forever.
func TestBinaryDeletedWhenItsJobsEndDuringSubmission(t *testing.T) {
	a := newAbuseCluster(t)
	ctx := context.Background()
	for round := 0; round < 6; round++ {
		script := []byte("#!/bin/sh\n# r" + strconv.Itoa(round) + "\nexit 0\n")
		h := &sluicev1.SubmitHeader{Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}
		n := 1 + round%3*3 // 1, 4 or 7 submissions at once
		ids := make(chan string, n)
		for range n {
			go func() {
				resp, err := submitParts(ctx, a.dc, hdr(h), dat(script))
				if err != nil {
					t.Error(err)
				}
				ids <- resp.GetJobId()
			}()
		}
		for range n {
			id := <-ids
			eventually(t, "the job finished", func() bool {
				j, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: id})
				return err == nil && j.GetState() == "finished"
			})
		}
		bin := filepath.Join(a.state, "binaries", shaOf(script))
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(bin); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d (%d submissions): the binary of finished jobs is still there", round, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
