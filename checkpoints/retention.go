package checkpoints

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Delete removes one version. A pinned version cannot be deleted
// (ErrPinned); unpin it first.
func (s *Store) Delete(variant string, version uint64) error {
	if err := checkName("variant", variant); err != nil {
		return fmt.Errorf("delete checkpoint: %w", err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("delete checkpoint: %w", err)
	}
	defer s.end()
	err := s.update(func(txn *badger.Txn) error {
		if _, err := getManifest(txn, variant, version); err != nil {
			return err
		}
		pin, pinned, err := getPin(txn, variant)
		if err != nil {
			return err
		}
		if pinned && pin == version {
			return fmt.Errorf("%s version %d: %w", variant, version, ErrPinned)
		}
		return txn.Delete(manifestKey(variant, version))
	})
	if err != nil {
		return fmt.Errorf("delete checkpoint: %w", err)
	}
	if err := s.deleteChunks(variant, version); err != nil {
		return fmt.Errorf("delete checkpoint %s version %d: chunks: %w", variant, version, err)
	}
	return nil
}

// Prune applies retention to variant now (Commit does it after every new
// version): it keeps the newest Options.KeepVersions versions, the best by
// validation accuracy (the newest among equals) and the pinned one, and
// deletes the rest. It returns how many versions it deleted. Their disk
// space comes back at the next value-log GC.
func (s *Store) Prune(variant string) (int, error) {
	if err := checkName("variant", variant); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if err := s.begin(); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer s.end()
	n, err := s.prune(variant)
	if err != nil {
		return n, fmt.Errorf("prune %s: %w", variant, err)
	}
	return n, nil
}

func (s *Store) prune(variant string) (int, error) {
	var doomed []uint64
	err := s.update(func(txn *badger.Txn) error {
		doomed = doomed[:0]
		recs, err := listManifests(txn, variant)
		if err != nil {
			return err
		}
		pin, pinned, err := getPin(txn, variant)
		if err != nil {
			return err
		}
		keep := map[uint64]bool{}
		best := -1
		for i, r := range recs {
			if i < s.opts.KeepVersions {
				keep[r.Version] = true
			}
			if best < 0 || float64(r.ValAccuracy) > float64(recs[best].ValAccuracy) {
				best = i
			}
		}
		if best >= 0 {
			keep[recs[best].Version] = true
		}
		if pinned {
			keep[pin] = true
		}
		for _, r := range recs {
			if !keep[r.Version] {
				if err := txn.Delete(manifestKey(variant, r.Version)); err != nil {
					return err
				}
				doomed = append(doomed, r.Version)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, v := range doomed {
		if err := s.deleteChunks(variant, v); err != nil {
			return len(doomed), err
		}
	}
	return len(doomed), nil
}

// deleteChunks deletes every chunk of one version.
func (s *Store) deleteChunks(variant string, version uint64) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: chunkPrefix(variant, version)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.deleteKeys(keys)
}

// removeOrphans deletes chunks that have no manifest: writes that were in
// progress when the process died, or deletions cut short. Called by Open,
// when no writer can be running.
func (s *Store) removeOrphans() error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pChunk)})
		defer it.Close()
		var lastVersion []byte // chunk prefix of the version last checked
		var orphan bool
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			rest := k[len(pChunk):]
			slash := bytes.IndexByte(rest, '/')
			if slash < 0 || len(rest)-slash-1 != 12 {
				keys = append(keys, it.Item().KeyCopy(nil)) // malformed: not ours to keep
				continue
			}
			vp := k[:len(pChunk)+slash+1+8]
			if !bytes.Equal(vp, lastVersion) {
				lastVersion = slices.Clone(vp)
				variant := string(rest[:slash])
				version := binary.BigEndian.Uint64(rest[slash+1:])
				_, err := txn.Get(manifestKey(variant, version))
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
					orphan = true
				case err != nil:
					return err
				default:
					orphan = false
				}
			}
			if orphan {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.deleteKeys(keys)
}

// pruneQuietly applies retention after a pointer change; a failure is
// logged, not returned, since the pointer change itself succeeded.
func (s *Store) pruneQuietly(variant string) {
	if _, err := s.prune(variant); err != nil {
		s.log.Warn("checkpoints: retention", "variant", variant, "err", err)
	}
}
