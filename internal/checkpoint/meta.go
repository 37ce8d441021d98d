package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Meta is one generation of a job driver's metadata.
type Meta struct {
	// Job names the job (its application name).
	Job string `json:"job"`
	// Operators fingerprints the graph: the stateful operators, whose state
	// the snapshots hold. A restart checks them with Compatible.
	Operators []Operator `json:"operators"`
	// Config is the configuration that must not change across a restart
	// (batch interval, partition counts, ...), as text.
	Config map[string]string `json:"config,omitempty"`
	// Zero is the job's zero time: batch times are Zero plus multiples of
	// the batch interval.
	Zero time.Time `json:"zero"`
	// Completed is the newest batch whose outputs and state commits all
	// succeeded (every earlier batch did too). Zero: none yet.
	Completed time.Time `json:"completed"`
	// Snapshots are the batch times of the snapshots written, oldest first.
	Snapshots []time.Time `json:"snapshots,omitempty"`
	// Extra holds caller-defined small records (e.g. a cluster job
	// driver's per-batch Kafka ranges), by name.
	Extra map[string][]byte `json:"extra,omitempty"`
	// Partitions is the job's default partition count (state without its
	// own Partitions option is partitioned so): a restart that does not
	// choose one resumes with it. 0 in checkpoints written before it.
	Partitions int `json:"partitions,omitempty"`
}

// Operator identifies one stateful operator of the graph.
type Operator struct {
	Name       string `json:"name"`
	Type       string `json:"type"` // operator kind and its key and state types
	Partitions int    `json:"partitions"`
}

// Compatible returns nil if a graph with operators now can restart from
// state written by a graph with operators was. Operators may be added (they
// start empty) but not removed, renamed or changed in type or partitions.
func Compatible(was, now []Operator) error {
	cur := map[string]Operator{}
	for _, o := range now {
		cur[o.Name] = o
	}
	var errs []error
	for _, o := range was {
		n, ok := cur[o.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("stateful operator %q (%s) is in the checkpoint but not in the job: keep it, or start from another --checkpoint directory", o.Name, o.Type))
		case n.Type != o.Type:
			errs = append(errs, fmt.Errorf("stateful operator %q changed type from %s to %s: its checkpointed state cannot be read as the new type; keep the type, give the new operator another name, or start from another --checkpoint directory", o.Name, o.Type, n.Type))
		case n.Partitions != o.Partitions:
			errs = append(errs, fmt.Errorf("stateful operator %q changed from %d to %d partitions: its state is partitioned by key; keep the partition count: run the job with --partitions=%d (in a cluster, after the binary: driver submit ... job -- --partitions=%d), or set the operator's Partitions option or Config.Parallelism", o.Name, o.Partitions, n.Partitions, o.Partitions, o.Partitions))
		}
	}
	return errors.Join(errs...)
}

func (s *Store) metaPath(i int) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("driver-%d.db", i))
}

func (s *Store) startedPath() string { return filepath.Join(s.cfg.Dir, "STARTED") }

var metaBucket = []byte("meta")

// openMeta opens both metadata files; a damaged one stays nil until
// LoadMeta decides what to do.
func (s *Store) openMeta() error {
	for i := range 2 {
		db, err := s.openDB(s.metaPath(i))
		if err != nil {
			if errors.Is(err, ErrDamaged) {
				s.cfg.Logger.Warn("checkpoint: metadata file damaged", slog.String("file", s.metaPath(i)), slog.Any("err", err))
				continue
			}
			return err
		}
		s.meta[i] = db
	}
	return nil
}

type generation struct {
	gen     uint64
	file    int
	payload []byte
	err     error
}

// readGenerations lists every generation of file i, newest first, each
// with its checksum checked.
func readGenerations(db *bolt.DB, file int) ([]generation, error) {
	var gens []generation
	err := view(db, func(tx *bolt.Tx) error {
		b := tx.Bucket(metaBucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(k) != 8 {
				gens = append(gens, generation{file: file, err: fmt.Errorf("%w: key of %d bytes", ErrDamaged, len(k))})
				continue
			}
			p, err := unseal(v)
			gens = append(gens, generation{gen: binary.BigEndian.Uint64(k), file: file, payload: p, err: err})
		}
		return nil
	})
	return gens, err
}

// LoadMeta returns the newest good metadata generation. ok is false for a
// new directory (nothing was ever written). A damaged newest generation or
// file falls back to the newest good one with a warning; if generations
// were written but none is good, LoadMeta returns an error naming the
// files.
func (s *Store) LoadMeta() (m Meta, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []generation
	var problems []string
	for i, db := range s.meta {
		if db == nil {
			problems = append(problems, fmt.Sprintf("%s cannot be opened", s.metaPath(i)))
			continue
		}
		gens, err := readGenerations(db, i)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.metaPath(i), err))
			s.cfg.Logger.Warn("checkpoint: metadata file unreadable", slog.String("file", s.metaPath(i)), slog.Any("err", err))
			db.Close()
			s.meta[i] = nil
			continue
		}
		all = append(all, gens...)
	}
	var best *generation
	for i := range all {
		g := &all[i]
		if g.gen >= s.gen {
			s.gen = g.gen + 1
		}
		if g.err != nil {
			problems = append(problems, fmt.Sprintf("%s generation %d: %v", s.metaPath(g.file), g.gen, g.err))
			continue
		}
		var cand Meta
		if err := json.Unmarshal(g.payload, &cand); err != nil {
			g.err = fmt.Errorf("%w: %v", ErrDamaged, err)
			problems = append(problems, fmt.Sprintf("%s generation %d: %v", s.metaPath(g.file), g.gen, g.err))
			continue
		}
		if best == nil || g.gen > best.gen {
			best = g
			m = cand
		}
	}
	_, serr := os.Stat(s.startedPath())
	started := serr == nil
	if best == nil {
		if len(problems) > 0 || started {
			why := "no metadata generation is left"
			if len(problems) > 0 {
				why = fmt.Sprint(problems)
			}
			return Meta{}, false, fmt.Errorf("checkpoint: %w: %s holds a job's checkpoint but no good metadata generation (%s); refusing to start from empty state: restore the directory from a copy, or move it aside to start the job afresh", ErrDamaged, s.cfg.Dir, why)
		}
		return Meta{}, false, nil
	}
	newer := 0
	for _, g := range all {
		if g.gen > best.gen {
			newer++
		}
	}
	if fi, err := os.Stat(s.metaPath(best.file)); err == nil {
		s.noteMeta(best.gen, m.Completed, fi.ModTime(), len(best.payload)+4)
	}
	if len(problems) > 0 {
		s.cfg.Logger.Warn("checkpoint: damaged metadata; using the newest good generation",
			slog.String("dir", s.cfg.Dir), slog.Uint64("generation", best.gen), slog.Int("newer_damaged", newer), slog.Any("problems", problems))
	}
	// Replace damaged files now that a good generation is known: the
	// next saves go to both files again.
	for i, db := range s.meta {
		if db != nil {
			continue
		}
		aside := s.quarantine(s.metaPath(i))
		fresh, err := s.openDB(s.metaPath(i))
		if err != nil {
			return Meta{}, false, fmt.Errorf("checkpoint: recreate %s: %w", s.metaPath(i), err)
		}
		s.meta[i] = fresh
		s.cfg.Logger.Warn("checkpoint: damaged metadata file replaced", slog.String("file", s.metaPath(i)), slog.String("moved_to", aside))
	}
	return m, true, nil
}

// SaveMeta writes m as the next generation (a synced commit) and deletes the
// generations past KeepGenerations in that file.
func (s *Store) SaveMeta(m Meta) error {
	payload, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("checkpoint: encode metadata: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("checkpoint: store is closed")
	}
	gen := s.gen
	file := int(gen % 2)
	db := s.meta[file]
	if db == nil {
		return fmt.Errorf("checkpoint: metadata file %s is damaged and was not replaced: call LoadMeta first", s.metaPath(file))
	}
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], gen)
	sealed := seal(payload)
	err = update(db, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		if err := b.Put(key[:], sealed); err != nil {
			return err
		}
		// Keep the newest KeepGenerations of this file.
		c := b.Cursor()
		n := 0
		var old [][]byte
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			n++
			if n > s.cfg.KeepGenerations {
				old = append(old, append([]byte(nil), k...))
			}
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: write metadata generation %d to %s: %w", gen, s.metaPath(file), err)
	}
	s.gen++
	s.noteMeta(gen, m.Completed, time.Now(), len(sealed))
	if gen == 0 || !fileExists(s.startedPath()) {
		if err := writeSynced(s.startedPath(), []byte("a sluice job wrote metadata here; see driver-*.db\n")); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writeSynced writes a small file durably (file and directory synced).
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
