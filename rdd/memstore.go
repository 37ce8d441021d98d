package rdd

import (
	"context"
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v15/arrow"
)

// MemShuffle is the in-process ShuffleService of local mode.
type MemShuffle struct {
	mu      sync.Mutex
	outputs map[int64]map[int][]arrow.Record // shuffle -> map partition -> blocks
}

// NewMemShuffle returns an empty in-memory shuffle store.
func NewMemShuffle() *MemShuffle { return &MemShuffle{outputs: map[int64]map[int][]arrow.Record{}} }

// PutMapOutput implements ShuffleService.
func (s *MemShuffle) PutMapOutput(shuffleID int64, mapPart int, blocks []arrow.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.outputs[shuffleID]
	if m == nil {
		m = map[int][]arrow.Record{}
		s.outputs[shuffleID] = m
	}
	releaseAll(m[mapPart])
	m[mapPart] = blocks
	return nil
}

// Fetch implements ShuffleService.
func (s *MemShuffle) Fetch(ctx context.Context, shuffleID int64, numMaps, reducePart int, yield func(arrow.Record) error) error {
	s.mu.Lock()
	blocks := make([]arrow.Record, 0, numMaps)
	for mp := 0; mp < numMaps; mp++ {
		out, ok := s.outputs[shuffleID][mp]
		if !ok {
			s.mu.Unlock()
			releaseAll(blocks)
			return &FetchFailedError{ShuffleID: shuffleID, MapPart: mp, Reason: "map output missing"}
		}
		if b := out[reducePart]; b != nil {
			b.Retain()
			blocks = append(blocks, b)
		}
	}
	s.mu.Unlock()
	defer releaseAll(blocks)
	for _, b := range blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := yield(b); err != nil {
			return err
		}
	}
	return nil
}

// HasMapOutput reports whether map partition mapPart of a shuffle is stored.
func (s *MemShuffle) HasMapOutput(shuffleID int64, mapPart int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.outputs[shuffleID][mapPart]
	return ok
}

// DropMapOutput forgets one map output, as if its executor had been lost.
func (s *MemShuffle) DropMapOutput(shuffleID int64, mapPart int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.outputs[shuffleID]; m != nil {
		releaseAll(m[mapPart])
		delete(m, mapPart)
	}
}

// Remove drops every block of the given shuffles.
func (s *MemShuffle) Remove(shuffleIDs ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range shuffleIDs {
		for _, blocks := range s.outputs[id] {
			releaseAll(blocks)
		}
		delete(s.outputs, id)
	}
}

// Close releases every block.
func (s *MemShuffle) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, m := range s.outputs {
		for _, blocks := range m {
			releaseAll(blocks)
		}
		delete(s.outputs, id)
	}
}

func releaseAll(rs []arrow.Record) {
	for _, r := range rs {
		if r != nil {
			r.Release()
		}
	}
}

// MemBlocks is the in-process BlockStore of local mode.
type MemBlocks struct {
	mu     sync.Mutex
	blocks map[blockID]arrow.Record
}

type blockID struct {
	node int64
	part int
}

func (b blockID) String() string { return fmt.Sprintf("rdd_%d_%d", b.node, b.part) }

// NewMemBlocks returns an empty in-memory block store.
func NewMemBlocks() *MemBlocks { return &MemBlocks{blocks: map[blockID]arrow.Record{}} }

// Get implements BlockStore.
func (s *MemBlocks) Get(nodeID int64, part int) (arrow.Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.blocks[blockID{nodeID, part}]
	if ok {
		r.Retain()
	}
	return r, ok
}

// Put implements BlockStore.
func (s *MemBlocks) Put(nodeID int64, part int, rec arrow.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := blockID{nodeID, part}
	if old, ok := s.blocks[id]; ok {
		old.Release()
	}
	rec.Retain()
	s.blocks[id] = rec
}

// Remove drops every partition of the given nodes.
func (s *MemBlocks) Remove(nodeIDs ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	drop := map[int64]bool{}
	for _, id := range nodeIDs {
		drop[id] = true
	}
	for id, r := range s.blocks {
		if drop[id.node] {
			r.Release()
			delete(s.blocks, id)
		}
	}
}

// Close releases every block.
func (s *MemBlocks) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.blocks {
		r.Release()
		delete(s.blocks, id)
	}
}
