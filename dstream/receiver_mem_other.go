//go:build !linux

package dstream

import "github.com/apache/arrow/go/v15/arrow/memory"

// offHeap returns small: off-heap receiver buffers are Linux-only.
func offHeap(small memory.Allocator) memory.Allocator { return small }
