package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StatePart is one partition of one stateful operator's state, encoded by
// the operator (Arrow IPC in dstream).
type StatePart struct {
	Op   string
	Part int
	Data []byte
}

// SnapshotInfo describes a complete snapshot.
type SnapshotInfo struct {
	Time  time.Time // the batch the state is as of
	Parts int       // number of StateParts
	File  string
}

var (
	stateBucket = []byte("state")
	doneKey     = []byte("complete")
)

type snapshotDone struct {
	Time  time.Time `json:"time"`
	Parts int       `json:"parts"`
}

// snapshotWriter is a snapshot in progress: a fresh bbolt file beside the
// one it replaces, renamed into place by CommitSnapshot.
type snapshotWriter struct {
	t     time.Time
	file  int
	db    *bolt.DB
	parts int
}

func (w *snapshotWriter) abort() {
	path := w.db.Path()
	w.db.Close()
	os.Remove(path)
}

func (s *Store) statePath(i int) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("state-%d.db", i))
}

func (s *Store) stateTmp(i int) string { return s.statePath(i) + ".new" }

// readSnapshotInfo reads the completion record of state file i.
func (s *Store) readSnapshotInfo(i int) (SnapshotInfo, error) {
	path := s.statePath(i)
	if !fileExists(path) {
		return SnapshotInfo{}, os.ErrNotExist
	}
	var info SnapshotInfo
	err := s.withStateFile(path, func(tx *bolt.Tx) error {
		b := tx.Bucket(stateBucket)
		if b == nil {
			return fmt.Errorf("%w: no state bucket", ErrDamaged)
		}
		p, err := unseal(b.Get(doneKey))
		if err != nil {
			return err
		}
		var d snapshotDone
		if err := json.Unmarshal(p, &d); err != nil {
			return fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		info = SnapshotInfo{Time: d.Time, Parts: d.Parts, File: path}
		return nil
	})
	return info, err
}

// withStateFile opens a snapshot file read-only for one short read
// transaction.
func (s *Store) withStateFile(path string, f func(tx *bolt.Tx) error) error {
	var db *bolt.DB
	err := guard(func() error {
		var e error
		db, e = bolt.Open(path, 0o644, &bolt.Options{Timeout: s.cfg.LockTimeout, ReadOnly: true})
		return e
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("%w: %s", ErrLocked, path)
		}
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return err
	}
	defer db.Close()
	return view(db, f)
}

// Snapshots returns the complete, readable snapshots, newest first. A
// damaged snapshot file is skipped with a warning.
func (s *Store) Snapshots() []SnapshotInfo {
	var out []SnapshotInfo
	for i := range 2 {
		info, err := s.readSnapshotInfo(i)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			s.cfg.Logger.Warn("checkpoint: state snapshot file damaged; skipped", slog.String("file", s.statePath(i)), slog.Any("err", err))
			continue
		}
		out = append(out, info)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Time.After(out[b].Time) })
	if len(out) > 0 {
		s.noteSnapshot(out[0].Time, out[0].File, time.Time{})
	}
	return out
}

// BeginSnapshot starts the snapshot as of batch t. It is written beside
// the older of the two snapshot files (or a damaged one), which it replaces
// when CommitSnapshot succeeds; until then both earlier snapshots stay.
func (s *Store) BeginSnapshot(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("checkpoint: store is closed")
	}
	if s.snap != nil {
		s.snap.abort()
		s.snap = nil
	}
	file := 0
	i0, e0 := s.readSnapshotInfo(0)
	i1, e1 := s.readSnapshotInfo(1)
	switch {
	case e0 != nil:
		file = 0
	case e1 != nil:
		file = 1
	case i1.Time.Before(i0.Time):
		file = 1
	}
	tmp := s.stateTmp(file)
	os.Remove(tmp)
	db, err := s.openDB(tmp)
	if err != nil {
		return fmt.Errorf("checkpoint: start snapshot of %s in %s: %w", t.UTC().Format(time.RFC3339Nano), tmp, err)
	}
	s.snap = &snapshotWriter{t: t, file: file, db: db}
	return nil
}

// PutState adds partitions to the snapshot in progress as of t, in one
// synced commit.
func (s *Store) PutState(t time.Time, parts ...StatePart) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.snap
	if w == nil || !w.t.Equal(t) {
		return fmt.Errorf("checkpoint: PutState for %s without BeginSnapshot", t.UTC().Format(time.RFC3339Nano))
	}
	err := update(w.db, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(stateBucket)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if err := b.Put(stateKey(p.Op, p.Part), seal(p.Data)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: write state snapshot %s: %w", w.db.Path(), err)
	}
	w.parts += len(parts)
	return nil
}

// stateKey is the operator name, a zero byte and the partition (4 bytes).
func stateKey(op string, part int) []byte {
	k := append([]byte(op), 0)
	return binary.BigEndian.AppendUint32(k, uint32(part))
}

// CommitSnapshot completes the snapshot as of t: its completion record is
// written, and the file replaces the older snapshot (a synced rename).
func (s *Store) CommitSnapshot(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.snap
	if w == nil || !w.t.Equal(t) {
		return fmt.Errorf("checkpoint: CommitSnapshot for %s without BeginSnapshot", t.UTC().Format(time.RFC3339Nano))
	}
	s.snap = nil
	done, _ := json.Marshal(snapshotDone{Time: t, Parts: w.parts})
	err := update(w.db, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(stateBucket)
		if err != nil {
			return err
		}
		return b.Put(doneKey, seal(done))
	})
	if err != nil {
		w.abort()
		return fmt.Errorf("checkpoint: complete state snapshot %s: %w", w.db.Path(), err)
	}
	tmp := w.db.Path()
	if err := w.db.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: close state snapshot %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.statePath(w.file)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: install state snapshot: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return fmt.Errorf("checkpoint: sync %s: %w", s.cfg.Dir, err)
	}
	s.noteSnapshot(t, s.statePath(w.file), time.Now())
	return nil
}

// AbortSnapshot drops the snapshot in progress, if any.
func (s *Store) AbortSnapshot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil {
		s.snap.abort()
		s.snap = nil
	}
}

// ReadSnapshot returns every partition of the complete snapshot as of t,
// each checksum checked. The read transaction copies the bytes and ends
// before ReadSnapshot returns.
func (s *Store) ReadSnapshot(t time.Time) ([]StatePart, error) {
	for _, info := range s.Snapshots() {
		if !info.Time.Equal(t) {
			continue
		}
		var out []StatePart
		err := s.withStateFile(info.File, func(tx *bolt.Tx) error {
			b := tx.Bucket(stateBucket)
			if b == nil {
				return fmt.Errorf("%w: no state bucket", ErrDamaged)
			}
			return b.ForEach(func(k, v []byte) error {
				if string(k) == string(doneKey) {
					return nil
				}
				if len(k) < 5 || k[len(k)-5] != 0 {
					return fmt.Errorf("%w: state key %q", ErrDamaged, k)
				}
				data, err := unseal(v)
				if err != nil {
					return fmt.Errorf("state %q: %w", k[:len(k)-5], err)
				}
				out = append(out, StatePart{Op: string(k[:len(k)-5]), Part: int(binary.BigEndian.Uint32(k[len(k)-4:])), Data: data})
				return nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("checkpoint: read state snapshot %s: %w", info.File, err)
		}
		if len(out) != info.Parts {
			return nil, fmt.Errorf("checkpoint: read state snapshot %s: %w: %d partitions, the completion record says %d", info.File, ErrDamaged, len(out), info.Parts)
		}
		return out, nil
	}
	return nil, fmt.Errorf("checkpoint: %w: no readable state snapshot as of %s in %s", ErrDamaged, t.UTC().Format(time.RFC3339Nano), s.cfg.Dir)
}
