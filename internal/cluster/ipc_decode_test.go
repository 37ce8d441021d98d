package cluster

import (
	"encoding/binary"
	"hash/crc32"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// frame wraps an IPC stream in DecodeIPC's trailer (length, CRC-32C,
// magic), as EncodeIPC does.
func frame(payload []byte) []byte {
	b := append([]byte(nil), payload...)
	var tr [ipcTrailer]byte
	binary.LittleEndian.PutUint64(tr[0:8], uint64(len(payload)))
	binary.LittleEndian.PutUint32(tr[8:12], crc32.Checksum(payload, crcTable))
	copy(tr[12:], ipcMagic)
	return append(b, tr[:]...)
}

// inPlaceRecords are records of the kinds that cross processes: strings,
// key-value structs, numbers, slices of larger arrays, no rows.
func inPlaceRecords(mem memory.Allocator) []arrow.Record {
	words := make([]string, 1000)
	kvs := make([]rdd.KV[string, int64], 1000)
	nums := make([]int64, 1000)
	for i := range words {
		words[i] = strings.Repeat("w", i%17) + string(rune('a'+i%26))
		kvs[i] = rdd.KV[string, int64]{Key: words[i], Value: int64(i) * 7}
		nums[i] = int64(i) << 20
	}
	str := rdd.Encode(mem, rdd.CodecOf[string](), words)
	kv := rdd.Encode(mem, rdd.CodecOf[rdd.KV[string, int64]](), kvs)
	out := []arrow.Record{str, kv, rdd.Encode(mem, rdd.CodecOf[int64](), nums), str.NewSlice(300, 700), kv.NewSlice(999, 1000),
		rdd.Encode(mem, rdd.CodecOf[string](), nil)}
	return out
}

// DecodeIPC reads back what EncodeIPC wrote (slices and empty records
// too) into buffers of its own, copying each buffer once: the message
// bodies are read where they lie in the payload. EncodeIPC sizes its
// buffer up front (ipcSize).
func TestIPCRoundTripCopiesOnce(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for i, rec := range inPlaceRecords(mem) {
		b, err := EncodeIPC(rec, mem)
		if err != nil {
			t.Fatal(err)
		}
		if est := ipcSize(rec); est < len(b) || est > 2*len(b)+4<<10 {
			t.Errorf("record %d: ipcSize %d for %d bytes of IPC", i, est, len(b))
		}
		got, err := DecodeIPC(b, mem)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !array.RecordEqual(got, rec) {
			t.Errorf("record %d: got %v, want %v", i, got, rec)
		}
		if s, ok := got.Column(0).(*array.String); ok && s.Len() > 0 {
			v := uintptr(unsafe.Pointer(unsafe.StringData(s.Value(0))))
			if lo := uintptr(unsafe.Pointer(&b[0])); v >= lo && v < lo+uintptr(len(b)) {
				t.Errorf("record %d: a decoded string points into the payload", i)
			}
		}
		got.Release()
		rec.Release()
	}
	// One copy: decoding a 4 MiB column allocates about its size, not
	// twice it.
	big := make([]string, 1<<16)
	for i := range big {
		big[i] = strings.Repeat("x", 60) + string(rune('a'+i%26))
	}
	rec := rdd.Encode(mem, rdd.CodecOf[string](), big)
	defer rec.Release()
	b, err := EncodeIPC(rec, mem)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := DecodeIPC(b, memory.NewGoAllocator())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	got.Release()
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(b))*3/2 {
		t.Errorf("decoding %d bytes allocated %d", len(b), alloc)
	}
}

// A framed stream whose IPC bytes are cut or damaged (the frame itself
// intact, as a peer that frames garbage would send) is an error, never a
// panic or a record read past the bytes.
func TestDecodeIPCRefusesBrokenStreams(t *testing.T) {
	mem := memory.NewGoAllocator()
	rec := rdd.Encode(mem, rdd.CodecOf[string](), []string{"alpha", "beta", "gamma"})
	defer rec.Release()
	b, err := EncodeIPC(rec, mem)
	if err != nil {
		t.Fatal(err)
	}
	payload := b[:len(b)-ipcTrailer]
	for cut := 0; cut < len(payload)-8; cut++ { // the last 8 bytes are the end-of-stream marker
		if r, err := DecodeIPC(frame(payload[:cut]), mem); err == nil {
			r.Release()
			t.Fatalf("payload cut at %d of %d: no error", cut, len(payload))
		}
	}
	bad := append([]byte(nil), payload...)
	binary.LittleEndian.PutUint32(bad[4:], 1<<30) // the schema's metadata length
	if _, err := DecodeIPC(frame(bad), mem); err == nil || !strings.Contains(err.Error(), "metadata of 1073741824 bytes") {
		t.Fatalf("metadata length past the end: %v", err)
	}
}

// A well-framed stream whose record metadata claims a buffer larger than
// the payload (each byte of that message set to 0x08 in turn: a length's
// fifth byte so set claims 32 GiB and more) is an error; Arrow's loader
// asked for the claimed size first, and the process died out of memory.
func TestDecodeIPCRefusesBuffersLargerThanThePayload(t *testing.T) {
	mem := memory.NewGoAllocator()
	rec := rdd.Encode(mem, rdd.CodecOf[rdd.KV[string, int64]](), []rdd.KV[string, int64]{{Key: "a", Value: 1}, {Key: "bc", Value: 2}})
	defer rec.Release()
	b, err := EncodeIPC(rec, mem)
	if err != nil {
		t.Fatal(err)
	}
	payload := b[:len(b)-ipcTrailer]
	// The schema message: continuation, length, metadata, no body.
	second := 8 + int(binary.LittleEndian.Uint32(payload[4:]))
	metaLen := int(binary.LittleEndian.Uint32(payload[second+4:]))
	refused := 0
	for p := second + 8; p < second+8+metaLen; p++ {
		bad := append([]byte(nil), payload...)
		bad[p] = 0x08
		r, err := DecodeIPC(frame(bad), mem)
		if err == nil {
			r.Release()
			continue
		}
		if strings.Contains(err.Error(), "in a payload of") {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no damaged buffer length was refused: does the sweep still reach them?")
	}
}
