package checkpoints

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestFeedbackCaps(t *testing.T) {
	o := testOptions(t)
	o.MaxFeedbackCount = 3
	o.MaxFeedbackBytes = 1000
	s := openT(t, t.TempDir(), o)
	img := func(n int) []byte { return bytes.Repeat([]byte{byte(n)}, n) }
	steps := []struct {
		op        string // add, del
		n         int    // image size, or ID to delete
		wantErr   error
		wantCount int
		wantBytes int64
	}{
		{"add", 400, nil, 1, 400},
		{"add", 400, nil, 2, 800},
		{"add", 300, ErrFull, 2, 800}, // bytes
		{"add", 200, nil, 3, 1000},
		{"add", 1, ErrFull, 3, 1000}, // count
		{"add", 0, ErrInvalid, 3, 1000},
		{"del", 2, nil, 2, 600},
		{"del", 2, ErrNotFound, 2, 600},
		{"add", 300, nil, 3, 900},
	}
	for i, st := range steps {
		var err error
		switch st.op {
		case "add":
			_, err = s.AddFeedback(Feedback{Label: st.n % 17, Image: img(st.n)})
		case "del":
			err = s.DeleteFeedback(uint64(st.n))
		}
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d: %s(%d) = %v; want %v", i, st.op, st.n, err, st.wantErr)
		}
		count, size, err := s.FeedbackUsage()
		if err != nil || count != st.wantCount || size != st.wantBytes {
			t.Fatalf("step %d: FeedbackUsage = %d, %d, %v; want %d, %d", i, count, size, err, st.wantCount, st.wantBytes)
		}
	}
	all, err := s.ListFeedback(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, f := range all {
		ids = append(ids, f.ID)
		if len(f.Image) == 0 || f.Label != len(f.Image)%17 || !bytes.Equal(f.Image, img(len(f.Image))) {
			t.Errorf("feedback %d = label %d, %d bytes", f.ID, f.Label, len(f.Image))
		}
	}
	if want := []uint64{1, 3, 4}; !slices.Equal(ids, want) {
		t.Errorf("ListFeedback IDs = %v; want %v", ids, want)
	}
	page, err := s.ListFeedback(1, 1)
	if err != nil || len(page) != 1 || page[0].ID != 3 {
		t.Errorf("ListFeedback(after 1, limit 1) = %v, %v; want [3]", page, err)
	}
}

func TestFeedbackRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)
	big, _ := readN(newGen(1, 200<<10)) // above the value threshold: lives in the value log
	want := []Feedback{
		{Label: 0, Image: []byte("tiny"), Time: at},
		{Label: 16, Image: big, Time: at.Add(time.Second)},
		{Label: -1, Image: []byte("negative label"), Time: at.Add(2 * time.Second)},
	}
	for i := range want {
		got, err := s.AddFeedback(want[i])
		if err != nil {
			t.Fatal(err)
		}
		want[i].ID = got.ID
	}
	s.Close()
	s = openT(t, dir, testOptions(t))
	got, err := s.ListFeedback(0, 0)
	if err != nil || len(got) != len(want) {
		t.Fatalf("ListFeedback = %d examples, %v; want %d", len(got), err, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Label != w.Label || !bytes.Equal(g.Image, w.Image) || !g.Time.Equal(w.Time) {
			t.Errorf("feedback %d = {%d %d %d bytes %v}; want {%d %d %d bytes %v}", i, g.ID, g.Label, len(g.Image), g.Time, w.ID, w.Label, len(w.Image), w.Time)
		}
	}
}

func readN(g *gen) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(g)
	return b.Bytes(), err
}
