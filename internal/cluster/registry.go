package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// RegistryFile is the coordinator's job registry, in its state directory.
const RegistryFile = "registry.db"

// Errors of opening the job registry.
var (
	// ErrRegistryLocked: another process (a second `driver serve` on the
	// same state directory) holds the registry.
	ErrRegistryLocked = errors.New("job registry locked")
	// ErrRegistryDamaged: the registry cannot be read. The coordinator
	// refuses to start rather than start with an empty registry and
	// forget the jobs it should restart.
	ErrRegistryDamaged = errors.New("job registry damaged")
)

var (
	jobsBucket = []byte("jobs")
	metaBucket = []byte("meta") // its sequence numbers the jobs
)

// jobRecord is what the registry keeps of a job: enough to list it and to
// start its driver again exactly as before (same binary, arguments and
// partition count).
type jobRecord struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	SHA256 string   `json:"sha256"`
	Args   []string `json:"args,omitempty"`
	// Parallelism is SLUICE_PARALLELISM of the first start, given again on
	// every restart: the job's checkpoint refuses another partition count.
	Parallelism   int    `json:"parallelism"`
	Supervise     bool   `json:"supervise,omitempty"`
	State         string `json:"state"`
	Attempt       int    `json:"attempt"`
	StartedUnixMs int64  `json:"started_unix_ms"`
	Error         string `json:"error,omitempty"`
	// RestartsUnixMs are the times of the restarts within the restart
	// window (older ones are dropped).
	RestartsUnixMs []int64 `json:"restarts_unix_ms,omitempty"`
}

// registry is the job registry in bbolt: one record per job, keyed by its
// id, each a CRC-32C and the record's JSON. Every write is one short,
// synced transaction.
type registry struct {
	db   *bolt.DB
	path string
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openRegistry opens (or creates) STATE-DIR/registry.db, waiting at most
// timeout for another process's lock.
func openRegistry(stateDir string, timeout time.Duration) (*registry, error) {
	path := filepath.Join(stateDir, RegistryFile)
	var db *bolt.DB
	err := guardBolt(func() error {
		var e error
		db, e = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
		return e
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("cluster: %w: %s is held by another process (waited %v): is another `driver serve` using this --state-dir? Stop it, or give this one another --state-dir",
			ErrRegistryLocked, path, timeout)
	}
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("cluster: job registry: %w", err)
		}
		return nil, damaged(path, err)
	}
	r := &registry{db: db, path: path}
	if err := r.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{jobsBucket, metaBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, damaged(path, err)
	}
	return r, nil
}

func damaged(path string, err error) error {
	return fmt.Errorf("cluster: %w: %s: %v; refusing to start without the jobs it lists (move the file aside to start with an empty registry: its jobs are then not restarted)",
		ErrRegistryDamaged, path, err)
}

// guardBolt runs f, turning a panic or a memory fault (a read past the end
// of a truncated, mapped file) into an error.
func guardBolt(f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return f()
}

func (r *registry) update(f func(tx *bolt.Tx) error) error {
	return guardBolt(func() error { return r.db.Update(f) })
}

// nextNumber returns the next job number. Numbers are never reused, also
// across restarts of the coordinator.
func (r *registry) nextNumber() (uint64, error) {
	var n uint64
	err := r.update(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.Bucket(metaBucket).NextSequence()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cluster: job registry %s: %w", r.path, err)
	}
	return n, nil
}

// put writes a job's record.
func (r *registry) put(rec jobRecord) error {
	js, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint32(nil, crc32.Checksum(js, castagnoli))
	v = append(v, js...)
	if err := r.update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Put([]byte(rec.ID), v) }); err != nil {
		return fmt.Errorf("cluster: job registry %s: write job %s: %w", r.path, rec.ID, err)
	}
	return nil
}

// delete removes a job's record (a submission whose job never started).
func (r *registry) delete(id string) error {
	if err := r.update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("cluster: job registry %s: delete job %s: %w", r.path, id, err)
	}
	return nil
}

// load reads every record. A record that fails its checksum or does not
// decode is an ErrRegistryDamaged error, never skipped.
func (r *registry) load() ([]jobRecord, error) {
	var recs []jobRecord
	err := guardBolt(func() error {
		return r.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(jobsBucket).ForEach(func(k, v []byte) error {
				if len(v) < 4 || binary.BigEndian.Uint32(v) != crc32.Checksum(v[4:], castagnoli) {
					return fmt.Errorf("job %q: checksum mismatch", k)
				}
				var rec jobRecord
				if err := json.Unmarshal(v[4:], &rec); err != nil {
					return fmt.Errorf("job %q: %w", k, err)
				}
				if rec.ID != string(k) || checkID("job id", rec.ID) != nil || checkSHA(rec.SHA256) != nil {
					return fmt.Errorf("job %q: a record with id %q and binary %q", k, rec.ID, rec.SHA256)
				}
				recs = append(recs, rec)
				return nil
			})
		})
	})
	if err != nil {
		return nil, damaged(r.path, err)
	}
	return recs, nil
}

// close closes the file and releases its lock.
func (r *registry) close() error { return r.db.Close() }
