package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Extra is a labelled image to add to a training split: an encoded JPEG or
// PNG, and its class index.
type Extra struct {
	Name  string // for messages and Files
	Data  []byte
	Label int
}

// WithTrain returns a copy of d whose training split also holds extras,
// decoded as at Load (for example images clients sent as feedback). d is
// unchanged; the copy shares its decoded images. An image that does not
// decode, or a label out of range, is an error naming it.
func (d *Dataset) WithTrain(extras []Extra) (*Dataset, error) {
	c := *d
	c.splits[Train] = slices.Clip(d.splits[Train])
	h := sha256.New()
	h.Write([]byte(d.fingerprint))
	for _, e := range extras {
		if e.Label < 0 || e.Label >= len(d.classes) {
			return nil, fmt.Errorf("add %s: %w: label %d, want 0 to %d", e.Name, ErrInvalidOptions, e.Label, len(d.classes)-1)
		}
		pix, err := decodeRGB(e.Data, d.size)
		if err != nil {
			return nil, fmt.Errorf("add %s: decode image: %w", e.Name, err)
		}
		c.splits[Train] = append(c.splits[Train], example{label: int32(e.Label), file: e.Name, pix: pix})
		h.Write(e.Data)
	}
	c.fingerprint = hex.EncodeToString(h.Sum(nil))
	return &c, nil
}
