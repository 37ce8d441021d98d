package scheduler

import (
	"context"
	"sync"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// LocalBackend runs tasks on N goroutines in this process: local mode's
// executor. Shuffle blocks and cached partitions stay in memory.
type LocalBackend struct {
	slots   int
	alloc   memory.Allocator
	shuffle rdd.ShuffleService
	blocks  rdd.BlockStore

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*Task
	closed bool
	wg     sync.WaitGroup
}

// LocalID is the executor id local mode reports.
const LocalID = "local"

// NewLocalBackend returns a backend with the given number of slots.
func NewLocalBackend(slots int, alloc memory.Allocator, shuffle rdd.ShuffleService, blocks rdd.BlockStore) *LocalBackend {
	b := &LocalBackend{slots: max(1, slots), alloc: alloc, shuffle: shuffle, blocks: blocks}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Start implements Backend: it starts one goroutine per slot, owned by the
// backend and waited for by Stop.
func (b *LocalBackend) Start(report func(TaskResult)) {
	for i := 0; i < b.slots; i++ {
		b.wg.Go(func() {
			for {
				t, ok := b.next()
				if !ok {
					return
				}
				if t.Job.Finished() {
					continue
				}
				// The task's context ends when its job does (failed or
				// cancelled), so a killed task stops at its next check.
				ctx, cancel := context.WithCancel(context.Background())
				stop := make(chan struct{})
				go func() { // ends with the task at the latest
					select {
					case <-t.Job.Done():
						cancel()
					case <-stop:
					}
				}()
				tc := &rdd.TaskContext{Ctx: ctx, Alloc: b.alloc, Shuffle: b.shuffle, Blocks: b.blocks}
				res := RunTask(tc, t)
				close(stop)
				cancel()
				res.Executor = LocalID
				report(res)
			}
		})
	}
}

func (b *LocalBackend) next() (*Task, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) == 0 && !b.closed {
		b.cond.Wait()
	}
	if len(b.queue) == 0 {
		return nil, false
	}
	t := b.queue[0]
	b.queue[0] = nil
	b.queue = b.queue[1:]
	return t, true
}

// Launch implements Backend.
func (b *LocalBackend) Launch(t *Task) {
	b.mu.Lock()
	b.queue = append(b.queue, t)
	b.mu.Unlock()
	b.cond.Signal()
}

// Stop implements Backend.
func (b *LocalBackend) Stop() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
	b.wg.Wait()
}
