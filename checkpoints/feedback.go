package checkpoints

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// MaxFeedbackImage is the largest image AddFeedback accepts, in bytes.
const MaxFeedbackImage = 32 << 20

// Feedback is one labelled image sent by a client for fine-tuning.
type Feedback struct {
	ID    uint64 // assigned by AddFeedback, increasing
	Label int
	Image []byte // encoded image, opaque to the store
	Time  time.Time
}

func feedbackKey(id uint64) []byte { return binary.BigEndian.AppendUint64([]byte(pFeedback), id) }

// Value: format byte 1 | label int64 | time unix ns int64 | image bytes.
func encodeFeedback(f Feedback) []byte {
	b := make([]byte, 0, 17+len(f.Image))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(f.Label)))
	b = binary.BigEndian.AppendUint64(b, uint64(f.Time.UnixNano()))
	return append(b, f.Image...)
}

func decodeFeedback(id uint64, v []byte) (Feedback, error) {
	if len(v) < 17 || v[0] != 1 {
		return Feedback{}, fmt.Errorf("feedback %d: bad record: %w", id, ErrCorrupt)
	}
	return Feedback{
		ID:    id,
		Label: int(int64(binary.BigEndian.Uint64(v[1:]))),
		Time:  time.Unix(0, int64(binary.BigEndian.Uint64(v[9:]))),
		Image: append([]byte(nil), v[17:]...),
	}, nil
}

func getUsage(txn *badger.Txn) (count, size uint64, err error) {
	item, err := txn.Get(feedbackUsageKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 16 {
			return fmt.Errorf("feedback usage of %d bytes: %w", len(v), ErrCorrupt)
		}
		count, size = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		return nil
	})
	return count, size, err
}

func setUsage(txn *badger.Txn, count, size uint64) error {
	return txn.Set(feedbackUsageKey, binary.BigEndian.AppendUint64(be64(count), size))
}

// AddFeedback stores one example and returns it with its ID (and Time, if
// it was zero, set to now). If the store already holds
// Options.MaxFeedbackCount examples, or the image would take the total
// image bytes past Options.MaxFeedbackBytes, it returns ErrFull.
func (s *Store) AddFeedback(f Feedback) (Feedback, error) {
	if len(f.Image) == 0 || len(f.Image) > MaxFeedbackImage {
		return Feedback{}, fmt.Errorf("add feedback: image of %d bytes, want 1 to %d: %w", len(f.Image), MaxFeedbackImage, ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = time.Now()
	}
	if err := s.begin(); err != nil {
		return Feedback{}, fmt.Errorf("add feedback: %w", err)
	}
	defer s.end()
	err := s.update(func(txn *badger.Txn) error {
		count, size, err := getUsage(txn)
		if err != nil {
			return err
		}
		if count+1 > uint64(s.opts.MaxFeedbackCount) {
			return fmt.Errorf("%d examples, cap %d: %w", count, s.opts.MaxFeedbackCount, ErrFull)
		}
		if size+uint64(len(f.Image)) > uint64(s.opts.MaxFeedbackBytes) {
			return fmt.Errorf("%d image bytes plus %d, cap %d: %w", size, len(f.Image), s.opts.MaxFeedbackBytes, ErrFull)
		}
		last, _, err := getUint64(txn, feedbackSeqKey)
		if err != nil {
			return err
		}
		f.ID = last + 1
		if err := txn.Set(feedbackSeqKey, be64(f.ID)); err != nil {
			return err
		}
		if err := txn.Set(feedbackKey(f.ID), encodeFeedback(f)); err != nil {
			return err
		}
		return setUsage(txn, count+1, size+uint64(len(f.Image)))
	})
	if err != nil {
		return Feedback{}, fmt.Errorf("add feedback: %w", err)
	}
	return f, nil
}

// ListFeedback returns up to limit examples with IDs greater than after, in
// ID order (oldest first); limit <= 0 means all. Page through with the last
// ID returned.
func (s *Store) ListFeedback(after uint64, limit int) ([]Feedback, error) {
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("list feedback: %w", err)
	}
	defer s.end()
	var out []Feedback
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pFeedback)})
		defer it.Close()
		for it.Seek(feedbackKey(after + 1)); it.Valid(); it.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			k := it.Item().Key()
			if len(k) != len(pFeedback)+8 {
				return fmt.Errorf("feedback key %q: %w", k, ErrCorrupt)
			}
			id := binary.BigEndian.Uint64(k[len(pFeedback):])
			if id <= after {
				continue // after+1 overflowed
			}
			var f Feedback
			err := it.Item().Value(func(v []byte) error {
				var err error
				f, err = decodeFeedback(id, v)
				return err
			})
			if err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list feedback: %w", err)
	}
	return out, nil
}

// DeleteFeedback removes one example and gives its room back to the caps.
func (s *Store) DeleteFeedback(id uint64) error {
	if err := s.begin(); err != nil {
		return fmt.Errorf("delete feedback: %w", err)
	}
	defer s.end()
	err := s.update(func(txn *badger.Txn) error {
		item, err := txn.Get(feedbackKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("feedback %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var n uint64
		if err := item.Value(func(v []byte) error {
			if len(v) < 17 {
				return fmt.Errorf("feedback %d: bad record: %w", id, ErrCorrupt)
			}
			n = uint64(len(v) - 17)
			return nil
		}); err != nil {
			return err
		}
		count, size, err := getUsage(txn)
		if err != nil {
			return err
		}
		if count > 0 {
			count--
		}
		size -= min(size, n)
		if err := setUsage(txn, count, size); err != nil {
			return err
		}
		return txn.Delete(feedbackKey(id))
	})
	if err != nil {
		return fmt.Errorf("delete feedback: %w", err)
	}
	s.garbage.Store(true)
	return nil
}

// FeedbackUsage returns how many examples are stored and their total image
// bytes, the two quantities the caps apply to.
func (s *Store) FeedbackUsage() (count int, bytes int64, err error) {
	if err := s.begin(); err != nil {
		return 0, 0, fmt.Errorf("feedback usage: %w", err)
	}
	defer s.end()
	var c, b uint64
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		c, b, err = getUsage(txn)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("feedback usage: %w", err)
	}
	return int(c), int64(b), nil
}
