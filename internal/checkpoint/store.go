// Package checkpoint is a job's durable store in a checkpoint directory:
// driver metadata in checksummed generations, snapshots of stateful
// operators' partitions as of a batch time, and the receiver write-ahead log
// of input that arrives in the job driver. Every file is a bbolt database
// opened with a lock timeout; every write is a synced bbolt commit; read
// transactions copy what they need and end at once.
//
// Layout of a directory (see docs/DESIGN.md, "Checkpoints and recovery"):
//
//	LOCK                 flock held while a Store is open (one process per directory)
//	driver-0.db          driver metadata generations 0, 2, 4, ... (even)
//	driver-1.db          driver metadata generations 1, 3, 5, ... (odd)
//	state-0.db           one complete state snapshot (written aside, then renamed)
//	state-1.db           the other snapshot (snapshots alternate between the two)
//	wal.db               write-ahead log: per batch time, per input, its records
//
// Metadata and snapshots live in two files written alternately, so a file
// destroyed entirely (truncated, overwritten) costs at most its newest
// generation: the store falls back to the other file, with a warning, and
// the caller replays more batches. If nothing good is left it refuses to
// open with an error naming the files, never a silent start from empty
// state.
package checkpoint

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Config configures a Store. Zero values mean defaults.
type Config struct {
	// Dir is the checkpoint directory; created if missing. Required.
	Dir string
	// LockTimeout bounds the wait for another process's lock on the
	// directory or one of its files. Default 1s.
	LockTimeout time.Duration
	// KeepGenerations is the number of metadata generations kept per
	// metadata file (two files, so twice as many in all). Default 2.
	KeepGenerations int
	// Logger receives the warnings of fallbacks. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("checkpoint: Config.Dir is empty: name a directory for the job's checkpoints (--checkpoint DIR)")
	}
	if c.LockTimeout <= 0 {
		c.LockTimeout = time.Second
	}
	if c.KeepGenerations <= 0 {
		c.KeepGenerations = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// ErrLocked is wrapped by Open's error when another process holds the
// directory.
var ErrLocked = errors.New("checkpoint directory is in use by another process")

// ErrDamaged is wrapped by errors about files or records whose checksum or
// structure is wrong.
var ErrDamaged = errors.New("checkpoint data is damaged")

// Store is an open checkpoint directory. Its methods are safe for
// concurrent use; writes are serialized.
type Store struct {
	cfg  Config
	lock *os.File

	mu     sync.Mutex // guards the fields below and serializes writes
	meta   [2]*bolt.DB
	gen    uint64 // next metadata generation to write
	wal    *bolt.DB
	snap   *snapshotWriter // the snapshot being written, if any
	closed bool

	statsMu sync.Mutex // guards stats
	stats   Stats
}

// Stats describes the newest checkpoint a Store wrote or found: its newest
// metadata generation and its newest complete state snapshot. The web UI,
// JSON API and /metrics show them.
type Stats struct {
	// Written is when the newest metadata generation was written (for one
	// found at open, its file's modification time); zero: none yet.
	Written time.Time
	// Generation is that generation's number; Completed the last completed
	// batch it records (zero: none yet); MetaBytes its record's size.
	Generation uint64
	Completed  time.Time
	MetaBytes  int64
	// SnapshotWritten is when the newest complete state snapshot was
	// written (for one found, its file's modification time); zero: none.
	// Snapshot is the batch its state is as of, SnapshotBytes the size of
	// its file.
	SnapshotWritten time.Time
	Snapshot        time.Time
	SnapshotBytes   int64
}

// Stats returns what the store knows of its newest checkpoint. It stays
// valid after Close.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// noteMeta records the newest metadata generation.
func (s *Store) noteMeta(gen uint64, completed, written time.Time, size int) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats.Generation, s.stats.Completed, s.stats.Written, s.stats.MetaBytes = gen, completed, written, int64(size)
}

// noteSnapshot records the complete snapshot as of t in the file at path:
// one just written (written is now), or one found (written is zero), which
// counts only if the store knows no snapshot as new.
func (s *Store) noteSnapshot(t time.Time, path string, written time.Time) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if written.IsZero() && !s.stats.SnapshotWritten.IsZero() && !t.After(s.stats.Snapshot) {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if written.IsZero() {
		written = fi.ModTime()
	}
	s.stats.Snapshot, s.stats.SnapshotWritten, s.stats.SnapshotBytes = t, written, fi.Size()
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// seal prefixes payload with its CRC-32C.
func seal(payload []byte) []byte {
	out := make([]byte, 4, 4+len(payload))
	c := crc32.Checksum(payload, crcTable)
	out[0], out[1], out[2], out[3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return append(out, payload...)
}

// unseal checks and strips the checksum; the result is a copy, valid after
// the read transaction ends.
func unseal(v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("%w: record of %d bytes is shorter than its checksum", ErrDamaged, len(v))
	}
	want := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	if crc32.Checksum(v[4:], crcTable) != want {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrDamaged)
	}
	return append([]byte(nil), v[4:]...), nil
}

// Open opens (creating if needed) the checkpoint directory. It fails fast,
// after cfg.LockTimeout, if another process has it open.
func Open(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: create directory %s: %w", cfg.Dir, err)
	}
	s := &Store{cfg: cfg}
	lock, err := lockDir(cfg.Dir, cfg.LockTimeout)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.openMeta(); err != nil {
		s.Close()
		return nil, err
	}
	wal, err := s.openDB(filepath.Join(cfg.Dir, walFile))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("checkpoint: the write-ahead log %s cannot be opened (%w); the input of batches after the last snapshot is in it, so the job cannot resume without it: move the directory aside to start from empty state", filepath.Join(cfg.Dir, walFile), err)
	}
	s.wal = wal
	os.Remove(filepath.Join(cfg.Dir, walFile+".compact")) // a compaction cut short
	for i := range 2 {
		os.Remove(s.stateTmp(i)) // a snapshot cut short: never renamed into place
	}
	return s, nil
}

const walFile = "wal.db"

// lockDir takes an exclusive flock on DIR/LOCK, retrying until timeout.
func lockDir(dir string, timeout time.Duration) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("checkpoint: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("checkpoint: %w: %s is locked (waited %v); another run of the job is using it: stop that run, or give this one another --checkpoint directory", ErrLocked, dir, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openDB opens a bbolt file with the lock timeout; a damaged file that
// makes bbolt fault or panic is reported as ErrDamaged.
func (s *Store) openDB(path string) (db *bolt.DB, err error) {
	err = guard(func() error {
		var e error
		db, e = bolt.Open(path, 0o644, &bolt.Options{Timeout: s.cfg.LockTimeout})
		return e
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("checkpoint: %w: %s is locked by another process: stop it or use another --checkpoint directory", ErrLocked, path)
	}
	if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, os.ErrPermission) {
		err = fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	return db, err
}

// guard runs f, turning a panic or a memory fault (a read past the end of a
// truncated, mapped file) into an ErrDamaged error.
func guard(f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	return f()
}

// view runs a read transaction under guard.
func view(db *bolt.DB, f func(tx *bolt.Tx) error) error {
	return guard(func() error { return db.View(f) })
}

// update runs a synced write transaction under guard.
func update(db *bolt.DB, f func(tx *bolt.Tx) error) error {
	return guard(func() error { return db.Update(f) })
}

// Dir returns the directory.
func (s *Store) Dir() string { return s.cfg.Dir }

// Close closes every file and releases the directory.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.snap != nil {
		s.snap.abort()
		s.snap = nil
	}
	for i, db := range s.meta {
		if db != nil {
			errs = append(errs, db.Close())
			s.meta[i] = nil
		}
	}
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // releases the flock
	}
	return errors.Join(errs...)
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// quarantine moves a damaged file aside (kept for inspection) so that a
// fresh one can take its place.
func (s *Store) quarantine(path string) string {
	aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405.000"))
	if err := os.Rename(path, aside); err != nil {
		s.cfg.Logger.Warn("checkpoint: could not move a damaged file aside", slog.String("file", path), slog.Any("err", err))
		return ""
	}
	return aside
}
