package dstream

// Defects of the JobDriver service found by the abuse campaign
// (abuse_jobdriver_test.go), one test each, each written to fail on the
// code before its fix (2026-11-30) and kept as a regression test. (They
// are here rather than in
// internal/cluster/abuse_defects_test.go because the JobDriver server is
// dstream's inputServer.)

import (
	"context"
	"testing"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The JobDriver service never looks at job_id: a request naming another
// job is served this job's input and broadcast values.
func TestAbuseDefectJobDriverIgnoresJobID(t *testing.T) {
	d := newAbuseDriver(t, t.TempDir(), 4)
	ctx := context.Background()
	b2 := d.zero.Add(2 * spillBI).UnixNano()
	_, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "some-other-job", BatchTimeUnixNano: b2}))
	if c := status.Code(err); c != codes.NotFound && c != codes.InvalidArgument {
		t.Errorf("FetchInput for another job: %v, want NotFound/InvalidArgument naming the job", err)
	}
	_, err = drainChunks(d.client.FetchBroadcast(ctx, &sluicev1.FetchBroadcastRequest{JobId: "some-other-job", Name: "big"}))
	if c := status.Code(err); c != codes.NotFound && c != codes.InvalidArgument {
		t.Errorf("FetchBroadcast for another job: %v, want NotFound/InvalidArgument naming the job", err)
	}
	st := d.zero.Add(6 * spillBI)
	if err := d.c.beginRemoteSnapshot(st); err != nil {
		t.Fatal(err)
	}
	err = putState(ctx, d.client, &sluicev1.StateChunk{JobId: "some-other-job", SnapshotUnixNano: st.UnixNano(), Op: "win", Part: 0, Data: []byte("x"), Last: true})
	if c := status.Code(err); c != codes.NotFound && c != codes.InvalidArgument && c != codes.FailedPrecondition {
		t.Errorf("PutState for another job: %v, want a refusal naming the job", err)
	}
}

// While a snapshot is being taken, PutState stores whatever it is sent:
// parts of operators the job does not have, negative partitions, and bytes
// that are not Arrow IPC for the job's real partitions; the snapshot then
// commits with them (finishRemoteSnapshot checks only that each expected
// partition arrived), so the newest checkpoint holds state no restore can
// read.
func TestAbuseDefectPutStateAcceptsGarbage(t *testing.T) {
	d := newAbuseDriver(t, t.TempDir(), 4)
	ctx := context.Background()
	st := d.zero.Add(6 * spillBI)
	if err := d.c.beginRemoteSnapshot(st); err != nil {
		t.Fatal(err)
	}
	err := putState(ctx, d.client, &sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: st.UnixNano(), Op: "no-such-op", Part: -7, Data: []byte("x"), Last: true})
	abuseWant(t, "an operator the job does not have", err, codes.InvalidArgument, "no-such-op")
	refused := 0
	for _, op := range d.c.stateful {
		id := op.ckptOperator()
		for p := range id.Partitions {
			err := putState(ctx, d.client, &sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: st.UnixNano(), Op: id.Name, Part: int32(p), Data: []byte("garbage, not Arrow IPC"), Last: true})
			if status.Code(err) == codes.InvalidArgument {
				refused++
			} else {
				t.Errorf("garbage for partition %d of %s: %v, want InvalidArgument", p, id.Name, err)
			}
		}
	}
	if ok, err := d.c.finishRemoteSnapshot(st); ok && refused == 0 {
		t.Errorf("the snapshot of %s committed with garbage state (%v)", fmtTime(st), err)
	}
}

// PutState appends each chunk's data to the partition in progress without
// checking that the chunk belongs to it: chunks of partition a/1 followed by
// a last chunk of b/2 are stored, concatenated, as b/2.
func TestAbuseDefectPutStateMixedChunks(t *testing.T) {
	d := newAbuseDriver(t, t.TempDir(), 4)
	st := d.zero.Add(6 * spillBI)
	if err := d.c.beginRemoteSnapshot(st); err != nil {
		t.Fatal(err)
	}
	ns := st.UnixNano()
	err := putState(context.Background(), d.client,
		&sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: ns, Op: "win", Part: 1, Data: []byte("partition 1's first half")},
		&sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: ns, Op: "win", Part: 2, Data: []byte("partition 2"), Last: true})
	abuseWant(t, "chunks of two partitions in one", err, codes.InvalidArgument, "partition")
}
