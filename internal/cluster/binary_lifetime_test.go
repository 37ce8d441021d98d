package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// An executor refuses at startup an id, address or slot count the
// coordinator would refuse, naming the flag to fix.
func TestDaemonChecksItsOwnIDAddressAndSlots(t *testing.T) {
	for _, c := range []struct {
		cfg  DaemonConfig
		flag string
	}{
		{DaemonConfig{ID: "exec 1", Advertise: "127.0.0.1:2", Slots: 1}, "--id"},
		{DaemonConfig{ID: strings.Repeat("e", 129), Advertise: "127.0.0.1:2", Slots: 1}, "--id"},
		{DaemonConfig{ID: "e1", Advertise: "localhost", Slots: 1}, "--advertise"},
		{DaemonConfig{ID: "e1", Advertise: "127.0.0.1:2", Slots: MaxSlots + 1}, "--slots"},
	} {
		c.cfg.DriverAddr, c.cfg.WorkDir = "127.0.0.1:1", t.TempDir()
		if _, err := NewDaemon(c.cfg); err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%+v: %v, want a refusal naming %s", c.cfg, err, c.flag)
		}
	}
	if id := DefaultExecutorID("127.0.0.1:7078"); checkID("executor id", id) != nil || !strings.HasSuffix(id, "-7078") {
		t.Errorf("default id %q", id)
	}
}
