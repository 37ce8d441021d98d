//go:build linux

package dstream

import (
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

// offHeapMin is the size from which a receiver's buffers are mapped outside
// the Go heap.
const offHeapMin = 1 << 20

// offHeap returns an allocator that maps buffers of offHeapMin bytes or more
// with mmap and unmaps them when Arrow frees them, so a receiver's input
// costs its size in resident memory, not the Go heap's garbage-collection
// headroom on top; smaller buffers come from small. Decoded strings alias
// these buffers: like every value of a batch, they must be copied
// (rdd.Clone) to be kept after the batch's input is released, as state and
// windows do.
func offHeap(small memory.Allocator) memory.Allocator {
	return &mmapAllocator{small: small, big: map[uintptr]int{}}
}

type mmapAllocator struct {
	small memory.Allocator
	mu    sync.Mutex
	big   map[uintptr]int // base address -> mapped length
}

func base(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func (a *mmapAllocator) Allocate(size int) []byte {
	if size < offHeapMin {
		return a.small.Allocate(size)
	}
	n := (size + syscall.Getpagesize() - 1) &^ (syscall.Getpagesize() - 1)
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(fmt.Sprintf("dstream: socket receiver: mmap %d bytes: %v", n, err))
	}
	a.mu.Lock()
	a.big[base(b)] = n
	a.mu.Unlock()
	return b[:size]
}

func (a *mmapAllocator) isBig(b []byte) bool {
	if cap(b) == 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.big[base(b)]
	return ok
}

func (a *mmapAllocator) Reallocate(size int, b []byte) []byte {
	big := a.isBig(b)
	if !big && size < offHeapMin {
		return a.small.Reallocate(size, b)
	}
	if big && size <= cap(b) {
		return b[:size]
	}
	nb := a.Allocate(size)
	copy(nb, b)
	a.Free(b)
	return nb
}

func (a *mmapAllocator) Free(b []byte) {
	if !a.isBig(b) {
		a.small.Free(b)
		return
	}
	a.mu.Lock()
	n := a.big[base(b)]
	delete(a.big, base(b))
	a.mu.Unlock()
	if err := syscall.Munmap(b[:n:n]); err != nil {
		panic(fmt.Sprintf("dstream: socket receiver: munmap %d bytes: %v", n, err))
	}
}
