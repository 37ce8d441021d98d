package dstream

import "github.com/apache/arrow/go/v15/arrow/memory"

// offHeap returns the allocator of a receiver's large buffers: the context's
// own. (Buffers mapped outside the Go heap and unmapped on release were
// tried: they return memory sooner, but a string of the input that user
// code kept without rdd.Clone would then point at unmapped memory and crash
// the process, where a Go-heap buffer keeps it valid.)
func offHeap(small memory.Allocator) memory.Allocator { return small }
