package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

var walBucket = []byte("wal")

func walKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

// WriteInput records the input of batch t, by input name, in one synced
// commit. It must succeed before the batch is scheduled: a replay of t
// reads exactly this. An empty map records that the batch was generated.
// Writing t again replaces its record.
func (s *Store) WriteInput(t time.Time, inputs map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("checkpoint: store is closed")
	}
	err := update(s.wal, func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(walBucket)
		if err != nil {
			return err
		}
		k := walKey(t)
		if root.Bucket(k) != nil {
			if err := root.DeleteBucket(k); err != nil {
				return err
			}
		}
		b, err := root.CreateBucket(k)
		if err != nil {
			return err
		}
		for name, data := range inputs {
			if err := b.Put([]byte(name), seal(data)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: write-ahead input of batch %s to %s: %w", t.UTC().Format(time.RFC3339Nano), s.wal.Path(), err)
	}
	return nil
}

// viewWAL runs a read transaction on the log under s.mu: a compaction
// replaces s.wal (and Close closes it), so a read that did not hold the
// lock could run on a closed file. Reads are short (they copy what they
// need); holding the store's lock only orders them with its writes.
func (s *Store) viewWAL(f func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("checkpoint: store is closed")
	}
	return view(s.wal, f)
}

// InputTimes returns the batch times with recorded input, oldest first.
func (s *Store) InputTimes() ([]time.Time, error) {
	var out []time.Time
	err := s.viewWAL(func(tx *bolt.Tx) error {
		root := tx.Bucket(walBucket)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: write-ahead log key of %d bytes", ErrDamaged, len(k))
			}
			out = append(out, time.Unix(0, int64(binary.BigEndian.Uint64(k))))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", filepath.Join(s.cfg.Dir, walFile), err)
	}
	return out, nil
}

// ReadInput returns the recorded input of batch t (copies, checksums
// checked); ok is false if t has no record.
func (s *Store) ReadInput(t time.Time) (inputs map[string][]byte, ok bool, err error) {
	err = s.viewWAL(func(tx *bolt.Tx) error {
		root := tx.Bucket(walBucket)
		if root == nil {
			return nil
		}
		b := root.Bucket(walKey(t))
		if b == nil {
			return nil
		}
		ok = true
		inputs = map[string][]byte{}
		return b.ForEach(func(k, v []byte) error {
			data, err := unseal(v)
			if err != nil {
				return fmt.Errorf("input %q: %w", k, err)
			}
			inputs[string(k)] = data
			return nil
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: read write-ahead input of batch %s from %s: %w", t.UTC().Format(time.RFC3339Nano), filepath.Join(s.cfg.Dir, walFile), err)
	}
	return inputs, ok, nil
}

// ReadInputOf returns the recorded input of one input of batch t (a copy,
// checksum checked); ok is false if t has no record of it. A running job
// reads back, with it, the input of batches it no longer keeps in memory.
func (s *Store) ReadInputOf(t time.Time, name string) (data []byte, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, errors.New("checkpoint: store is closed")
	}
	var mapped int64
	err = view(s.wal, func(tx *bolt.Tx) error {
		mapped = tx.Size()
		root := tx.Bucket(walBucket)
		if root == nil {
			return nil
		}
		b := root.Bucket(walKey(t))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(name))
		if v == nil {
			return nil
		}
		d, err := unseal(v)
		if err != nil {
			return fmt.Errorf("input %q: %w", name, err)
		}
		data, ok = d, true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: read write-ahead input of batch %s from %s: %w", t.UTC().Format(time.RFC3339Nano), filepath.Join(s.cfg.Dir, walFile), err)
	}
	s.unmapWAL(mapped)
	return data, ok, nil
}

// unmapWAL drops the first size bytes of the log's memory map from this
// process's resident pages. bbolt reads through a shared read-only mapping
// of the file, so every batch read back (ReadInputOf) would stay resident
// in the job's memory until the file is remapped: the log of a long window,
// although the job keeps none of it. The pages stay in the page cache; a
// later read faults them in again. s.mu held, so nothing remaps the file
// meanwhile (writes, compaction and Close hold it); size is a transaction's
// Size, which the mapping covers. Best effort: an error changes nothing.
func (s *Store) unmapWAL(size int64) {
	if size <= 0 || s.wal == nil {
		return
	}
	syscall.Syscall(syscall.SYS_MADVISE, s.wal.Info().Data, uintptr(size), syscall.MADV_DONTNEED)
}

// DeleteInputThrough deletes the recorded input of batches at or before t,
// then compacts the log file when most of it is free space.
func (s *Store) DeleteInputThrough(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("checkpoint: store is closed")
	}
	limit := uint64(t.UnixNano())
	err := update(s.wal, func(tx *bolt.Tx) error {
		root := tx.Bucket(walBucket)
		if root == nil {
			return nil
		}
		var old [][]byte
		c := root.Cursor()
		for k, _ := c.First(); k != nil && len(k) == 8 && binary.BigEndian.Uint64(k) <= limit; k, _ = c.Next() {
			old = append(old, append([]byte(nil), k...))
		}
		for _, k := range old {
			if err := root.DeleteBucket(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: delete write-ahead input through %s: %w", t.UTC().Format(time.RFC3339Nano), err)
	}
	// Deleting walked the deleted batches' pages.
	var mapped int64
	if view(s.wal, func(tx *bolt.Tx) error { mapped = tx.Size(); return nil }) == nil {
		s.unmapWAL(mapped)
	}
	return s.maybeCompactWAL()
}

// compactMinBytes is the log size below which compaction is not worth it.
var compactMinBytes int64 = 4 << 20

// maybeCompactWAL rewrites the log into a fresh file when over half of a
// large file is free pages (bbolt never shrinks a file by itself). s.mu held.
func (s *Store) maybeCompactWAL() error {
	fi, err := os.Stat(s.wal.Path())
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	st := s.wal.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(os.Getpagesize())
	if fi.Size() < compactMinBytes || free*2 < fi.Size() {
		return nil
	}
	return s.compactWAL()
}

// compactWAL copies the live log into wal.db.compact, then renames it over
// wal.db. A crash in between leaves wal.db as it was (the copy is removed
// at the next Open). s.mu held.
func (s *Store) compactWAL() error {
	path := s.wal.Path()
	tmp := filepath.Join(s.cfg.Dir, walFile+".compact")
	os.Remove(tmp)
	dst, err := s.openDB(tmp)
	if err != nil {
		return fmt.Errorf("checkpoint: compact %s: %w", path, err)
	}
	err = guard(func() error { return bolt.Compact(dst, s.wal, 16<<20) })
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: compact %s: %w", path, err)
	}
	if err := s.wal.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: compact %s: %w", path, err)
	}
	renameErr := os.Rename(tmp, path)
	if renameErr == nil {
		renameErr = syncDir(s.cfg.Dir)
	}
	db, err := s.openDB(path) // the compacted file, or the old one if the rename failed
	if err != nil {
		s.wal = nil
		s.closed = true
		return fmt.Errorf("checkpoint: reopen %s after compaction: %w", path, err)
	}
	s.wal = db
	if renameErr != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: compact %s: %w", path, renameErr)
	}
	return nil
}
