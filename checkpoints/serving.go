package checkpoints

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Served returns the version of variant that should be served: the pinned
// one if there is a pin, else the latest. pinned says which.
func (s *Store) Served(variant string) (m Manifest, pinned bool, err error) {
	if err := checkName("variant", variant); err != nil {
		return Manifest{}, false, fmt.Errorf("served version: %w", err)
	}
	if err := s.begin(); err != nil {
		return Manifest{}, false, fmt.Errorf("served version: %w", err)
	}
	defer s.end()
	err = s.db.View(func(txn *badger.Txn) error {
		var rec manifestRecord
		rec, pinned, err = served(txn, variant)
		m = rec.manifest()
		return err
	})
	if err != nil {
		return Manifest{}, false, fmt.Errorf("served version: %w", err)
	}
	return m, pinned, nil
}

func served(txn *badger.Txn, variant string) (manifestRecord, bool, error) {
	pin, pinned, err := getPin(txn, variant)
	if err != nil {
		return manifestRecord{}, false, err
	}
	if pinned {
		rec, err := getManifest(txn, variant, pin)
		return rec, true, err
	}
	recs, err := listManifests(txn, variant)
	if err != nil {
		return manifestRecord{}, false, err
	}
	if len(recs) == 0 {
		return manifestRecord{}, false, fmt.Errorf("%s has no versions: %w", variant, ErrNotFound)
	}
	return recs[0], false, nil
}

// Pin makes version the served version of variant until Unpin or another
// Pin. Retention never deletes a pinned version.
func (s *Store) Pin(variant string, version uint64) error {
	if err := checkName("variant", variant); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	defer s.end()
	err := s.update(func(txn *badger.Txn) error {
		if _, err := getManifest(txn, variant, version); err != nil {
			return err
		}
		return txn.Set(serveKey(variant), be64(version))
	})
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	s.pruneQuietly(variant)
	return nil
}

// Unpin returns variant to serving its latest version.
func (s *Store) Unpin(variant string) error {
	if err := checkName("variant", variant); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	defer s.end()
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(serveKey(variant)) }); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	s.pruneQuietly(variant)
	return nil
}

// Rollback pins the newest version older than the one served now, in one
// transaction, and returns it. With no older version it returns ErrNotFound
// and changes nothing.
func (s *Store) Rollback(variant string) (Manifest, error) {
	if err := checkName("variant", variant); err != nil {
		return Manifest{}, fmt.Errorf("rollback: %w", err)
	}
	if err := s.begin(); err != nil {
		return Manifest{}, fmt.Errorf("rollback: %w", err)
	}
	defer s.end()
	var m Manifest
	err := s.update(func(txn *badger.Txn) error {
		cur, _, err := served(txn, variant)
		if err != nil {
			return err
		}
		recs, err := listManifests(txn, variant)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Version < cur.Version {
				m = r.manifest()
				return txn.Set(serveKey(variant), be64(r.Version))
			}
		}
		return fmt.Errorf("%s has no version older than %d: %w", variant, cur.Version, ErrNotFound)
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("rollback: %w", err)
	}
	s.pruneQuietly(variant)
	return m, nil
}
