package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// errTooLarge refuses a binary larger than announced or allowed.
var errTooLarge = errors.New("binary too large")

// hashMismatch is the verdict on a binary whose bytes do not hash to the
// SHA-256 it was named by.
type hashMismatch struct {
	wantSHA, gotSHA   string
	wantSize, gotSize int64
}

func (e *hashMismatch) Error() string {
	return fmt.Sprintf("binary hash mismatch: refusing it (received %d bytes with SHA-256 %s, expected %s)", e.gotSize, e.gotSHA, e.wantSHA)
}

// receiveBinary writes the chunks next returns (until io.EOF) to path, but
// only if they hash to sha and, when size > 0, have that size: the bytes go
// to a temporary file, are synced, checked, made executable and renamed into
// place, so a binary stored under its hash is always the right one. More
// than limit bytes (or size, when given) are refused.
func receiveBinary(path, sha string, size, limit int64, next func() ([]byte, error)) error {
	if size > 0 {
		limit = size
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".incoming-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sum := sha256.New()
	var n int64
	for {
		d, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if n += int64(len(d)); n > limit {
			return fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
		}
		sum.Write(d)
		if _, err := tmp.Write(d); err != nil {
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != sha || (size > 0 && n != size) {
		return &hashMismatch{wantSHA: sha, gotSHA: got, wantSize: size, gotSize: n}
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	// Closed before it takes its name: a file open for writing cannot be
	// executed (ETXTBSY), and another submission of the same binary may
	// start it as soon as it is there.
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// verifyBinary checks, right before it is executed, that the binary at path
// still hashes to the SHA-256 it is named by (its file name). A file that
// does not is deleted: it is fetched again when next needed.
func verifyBinary(path string) error {
	want := filepath.Base(path)
	if err := checkSHA(want); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	sum := sha256.New()
	n, err := io.Copy(sum, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("verify binary %s: %w", path, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		os.Remove(path)
		return fmt.Errorf("refusing to run %s: %w (the file changed after it was stored; deleted it)", path,
			&hashMismatch{wantSHA: want, gotSHA: got, gotSize: n})
	}
	return nil
}
