package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fetchBlockStream is the server side of one FetchBlock call: it counts
// the chunks sent.
type fetchBlockStream struct {
	grpc.ServerStream
	chunks int
}

func (s *fetchBlockStream) Send(*sluicev1.Chunk) error { s.chunks++; return nil }
func (s *fetchBlockStream) Context() context.Context   { return context.Background() }

// When a job's process has died, the next RunTask of the job starts a new
// one and first deletes the job's whole shuffle directory (Daemon.process).
// The driver does not know yet: until a task result carries the new
// incarnation, reduce tasks on other executors keep fetching the dead
// process's map outputs from this daemon's Shuffle service. A fetch must
// either get the block or fail (NotFound: a fetch failure, the map output
// is recomputed), never be answered OK with no data: ShuffleStore.Open
// calls a block file that is missing while its map output's directory is
// there an empty block. Found by a review: os.RemoveAll unlinked the block
// files before their directory; now a removal renames the directory away
// first (ShuffleStore.removeDir), and taskShuffle.Fetch holds an empty
// answer against the map output's non-empty bitmap too.
func TestDeadJobProcessRestartNeverServesDeletedBlocksAsEmpty(t *testing.T) {
	d, work := testDaemon(t)
	const job, shuffle, blocks = "job-1", 7, 4000
	dir := filepath.Join(work, "shuffle", job, strconv.Itoa(shuffle), "0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for r := range blocks { // every block of map output 0 has rows
		if err := os.WriteFile(filepath.Join(dir, "r"+strconv.Itoa(r)+".arrow"), []byte("rows"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The job's process died (its done is closed): the next task starts
	// another.
	closed := make(chan struct{})
	close(closed)
	d.mu.Lock()
	d.gens[job] = 1
	d.jobs[job] = &jobProc{gen: 1, attempt: 1, ready: closed, done: closed, stderr: &tailBuffer{}}
	d.mu.Unlock()

	srv := &ShuffleServer{Store: d.store}
	var stop atomic.Bool
	var empty, served, notFound atomic.Int64
	var started, wg sync.WaitGroup
	for g := range 2 { // reduce tasks of other executors, fetching
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := false
			for i := 0; !stop.Load(); i++ {
				r := (i*7919 + g*1999) % blocks
				s := &fetchBlockStream{}
				err := srv.FetchBlock(&sluicev1.FetchBlockRequest{JobId: job, ShuffleId: shuffle, MapPartition: 0, ReducePartition: int32(r)}, s)
				switch {
				case err == nil && s.chunks == 0:
					empty.Add(1)
				case err == nil:
					served.Add(1)
				case status.Code(err) == codes.NotFound:
					notFound.Add(1)
				default:
					t.Errorf("FetchBlock r%d: %v", r, err)
				}
				if !once {
					once = true
					started.Done()
				}
			}
		}()
	}
	started.Wait()
	// A task of the job arrives: the daemon starts a new job process. (The
	// binary is not there, so the start fails; the directory is deleted
	// before the start either way.)
	bin := filepath.Join(work, "binaries", "0000000000000000000000000000000000000000000000000000000000000000")
	d.process(job, bin, nil, 1, 1)
	stop.Store(true)
	wg.Wait()
	if _, err := os.Stat(filepath.Join(work, "shuffle", job)); !os.IsNotExist(err) {
		t.Fatalf("the dead process's shuffle directory is still there (%v)", err)
	}
	t.Logf("fetches: %d served, %d NotFound, %d answered as an empty block", served.Load(), notFound.Load(), empty.Load())
	if n := empty.Load(); n > 0 {
		t.Errorf("%d fetches of blocks with rows were answered OK with no data while the daemon deleted the dead job process's shuffle files: the reduce tasks lose those rows instead of failing the fetch", n)
	}
}
